"""Labelled texts (classification): the row spec of the shared pipeline, and single files for eval and predict.

What is classification's own is here: one text and one label per row, the label set (given or inferred from
train), label noise, a split stratified by label, and the label counts of the report. Reading, the order of the
steps, leakage and splitting are data/pipeline.py's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from tailorlm.data.clean import (
    REASONS,
    add_fingerprints,
    drop_conflicts,
    drop_duplicates,
    filter_rows,
    filter_unknown,
    malformed_rejects,
    working_frame,
)
from tailorlm.data.load import EXTRA_PREFIX, FORMATS, Extras, read_table
from tailorlm.data.pipeline import (
    SPLITS,
    FilePart,
    Files,
    LeakRule,
    RowSpec,
    TokenCounter,
    reject_order,
)
from tailorlm.data.report import class_warnings, label_distribution, unknown_labels
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

COLUMNS = ["text", "label", "source", "row"]
#: the data report's keys, in order
REPORT_KEYS = ("sources", "split_from_train", "rows_read", "rows_kept", "rows_rejected", "removed", "stages",
               "labels", "label_distribution", "unknown_labels", "length_unit", "length", "warnings")


def _given_labels(cfg: DataConfig) -> list[str] | None:
    """data.labels stripped and de-duplicated; None when the label set is to be inferred from train."""
    if cfg.labels is None:
        return None
    labels = sorted({label.strip() for label in cfg.labels if label.strip()})
    if not labels:
        raise DataError("data.labels is empty; list the labels, or remove the key to infer them from train")
    return labels


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns callers see (side columns ``extra:<name>`` included), index 0..n-1."""
    return frame[COLUMNS + [c for c in frame.columns if c.startswith(EXTRA_PREFIX)]].reset_index(drop=True)


def _label_warnings(train_rejects: list[dict[str, Any]]) -> list[str]:
    unknown = Counter(r["label"] for r in train_rejects if r["reason"] == "unknown_label")
    if not unknown:
        return []
    shown = ", ".join(f"'{label}': {n}" for label, n in unknown.most_common(5))
    return [
        f"{sum(unknown.values())} training rows have labels outside data.labels and were dropped ({shown})"
    ]


@dataclass(frozen=True)
class ClassificationRows(RowSpec):
    """Labelled texts: one text and one label per row, read by data/load.py from any format it knows.

    ``extra_columns`` ({column: recipe key}) are side columns every file must have (a fairness group): they ride
    along as ``extra:<column>`` through every step and reach the splits, never the model. ``require_label`` is
    off only for files read to be predicted.
    """

    extra_columns: Extras | None = None
    require_label: bool = True
    reasons: ClassVar[tuple[str, ...]] = REASONS
    report_keys: ClassVar[tuple[str, ...]] = REPORT_KEYS
    leak_rules: ClassVar[tuple[LeakRule, ...]] = (
        LeakRule("leakage", lambda frame: frame["fingerprint"], lambda split, row: f"same text as {split} row {row}"),
    )

    def given_labels(self, cfg: DataConfig) -> list[str] | None:
        return _given_labels(cfg)

    def read(self, split: str, path: str | Path, cfg: DataConfig) -> FilePart:
        raw = read_table(
            path,
            fmt=cfg.format,
            text_column=cfg.text_column,
            label_column=cfg.label_column,
            require_label=self.require_label,
            split=split,
            max_rows=cfg.max_rows,
            extra_columns=self.extra_columns,
            max_bytes=cfg.max_file_bytes,
        )
        source = str(path)
        return FilePart.of(split, source, working_frame(raw, source, cfg.clean), malformed_rejects(raw, split, source),
                           raw.rows_read)

    def clean(self, part: FilePart, files: Files) -> None:
        """Empty, too short or too long texts, missing labels, and labels outside the label set: data.labels, or
        for validation and test the labels training kept."""
        given = files.given
        if part is files.train:
            labels, labels_from = (set(given) if given else None), "data.labels"
        else:
            labels = set(given) if given is not None else set(files.train.frame["label"])
            labels_from = "data.labels" if given is not None else "the training labels"
        part.apply(filter_rows(part.frame, files.cfg.clean, part.split, True, labels, labels_from))

    def dedupe(self, part: FilePart, files: Files) -> None:
        """Label noise in train (the same text with two labels: every copy goes), then exact / near duplicates."""
        clean = files.cfg.clean
        part.frame = add_fingerprints(part.frame)
        if part is files.train and clean.drop_conflicting_labels:
            part.apply(drop_conflicts(part.frame, part.split))
        part.apply(drop_duplicates(part.frame, clean, part.split))

    def final_labels(self, files: Files) -> list[str]:
        """The label set; when inferred, a label left with no training rows leaves held-out sets too."""
        if files.given is not None:
            return files.given
        labels = sorted(set(files.train.frame["label"]))
        for part in files.held_out.values():
            part.apply(filter_unknown(part.frame, set(labels), part.split, "the training labels"))
        return labels

    def check_train(self, train: FilePart) -> None:
        present = sorted(set(train.frame["label"]))
        if len(present) < 2:
            raise DataError(
                f"{train.path}: only one label ('{present[0]}') in the training data; classification needs at "
                "least two"
            )

    def stratify(self, cfg: DataConfig) -> bool:
        return cfg.split.stratify

    def public(self, frame: pd.DataFrame) -> pd.DataFrame:
        return _public(frame)

    def warnings_before_split(self, files: Files) -> list[str]:
        return _label_warnings(files.train.rejects)

    def warnings_after_split(self, files: Files, frames: dict[str, pd.DataFrame], labels: list[str]) -> list[str]:
        return class_warnings(label_distribution(frames["train"]), labels)

    def report_extras(self, files: Files, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                      labels: list[str], count_tokens: TokenCounter | None) -> dict[str, Any]:
        return {"labels": list(labels),
                "label_distribution": {name: label_distribution(frames[name]) for name in SPLITS},
                "unknown_labels": unknown_labels(rejects)}


# ------------------------------------------------------------------------------------------- public API


def load_labelled_file(
    path: str | Path, cfg: DataConfig, split: str = "eval", require_label: bool = True,
    extra_columns: Extras | None = None, dedupe: bool = True,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read and clean one file on its own (``tailor eval --data``, ``tailor predict --input``, ``tailor audit``).

    With ``require_label`` the rows are checked against ``cfg.labels`` (the model's labels) and, with ``dedupe``,
    exact / near duplicates inside the file are dropped, as for a test split. Without it (predict) every row with
    a usable text is kept, duplicates included, since each input row should get its prediction.
    """
    part = ClassificationRows(extra_columns, require_label).read(split, path, cfg)
    given = _given_labels(cfg) if require_label else None
    labels_from = "the model's labels" if split in ("eval", "predict") else "data.labels"
    part.apply(
        filter_rows(part.frame, cfg.clean, split, require_label, set(given) if given else None, labels_from)
    )
    if require_label and dedupe:
        part.frame = add_fingerprints(part.frame)
        part.apply(drop_duplicates(part.frame, cfg.clean, split))
    return _public(part.frame), sorted(part.rejects, key=reject_order)


def load_texts(path: str | Path, text_column: str = "text", fmt: str = "auto") -> pd.DataFrame:
    """Texts only (predict): ``text``, ``label`` (None without a label column), ``source``, ``row``."""
    if fmt not in ("auto", *FORMATS):
        raise DataError(f"{path}: unknown format '{fmt}'; use one of auto, {', '.join(FORMATS)}")
    cfg = DataConfig(train=str(path), text_column=text_column, format=fmt)  # type: ignore[arg-type]
    frame, _ = load_labelled_file(path, cfg, split="predict", require_label=False)
    return frame
