"""From the recipe's data section to train / validation / test frames, a rejects list and a quality report.

Order matters and is fixed: per-row cleaning, then label noise and duplicates inside each file, then leakage
between files, then carving validation/test out of train. Carving last means the held-out rows are already
clean and can never be near-copies of training rows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailorlm.data.clean import (
    add_fingerprints,
    drop_conflicts,
    drop_duplicates,
    drop_leakage,
    filter_rows,
    filter_unknown,
    malformed_rejects,
    working_frame,
)
from tailorlm.data.load import EXTRA_PREFIX, FORMATS, Extras, read_table
from tailorlm.data.report import build_report
from tailorlm.data.split import carve_splits, splits_from_files_or_train
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

COLUMNS = ["text", "label", "source", "row"]
EVAL_SPLITS = ("validation", "test")


@dataclass
class PreparedData:
    """What training needs: three cleaned splits, the label set, every dropped row, and the quality report."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    labels: list[str]
    rejects: list[dict[str, Any]]
    report: dict[str, Any]


@dataclass
class FilePart:
    """One input file on its way through cleaning, with the row count after each stage."""

    split: str
    path: str
    frame: pd.DataFrame
    rejects: list[dict[str, Any]]
    stages: dict[str, int] = field(default_factory=dict)

    def apply(self, result: tuple[pd.DataFrame, list[dict[str, Any]]]) -> None:
        self.frame, dropped = result
        self.rejects.extend(dropped)

    def mark(self, stage: str) -> None:
        self.stages[stage] = len(self.frame)


# ------------------------------------------------------------------------------------------- reading


def _read_part(split: str, path: str | Path, cfg: DataConfig, require_label: bool = True,
               extra_columns: Extras | None = None) -> FilePart:
    raw = read_table(
        path,
        fmt=cfg.format,
        text_column=cfg.text_column,
        label_column=cfg.label_column,
        require_label=require_label,
        split=split,
        max_rows=cfg.max_rows,
        extra_columns=extra_columns,
        max_bytes=cfg.max_file_bytes,
    )
    source = str(path)
    part = FilePart(split, source, working_frame(raw, source, cfg.clean), malformed_rejects(raw, split, source))
    part.stages["read"] = raw.rows_read
    return part


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


def _reason_summary(rejects: list[dict[str, Any]]) -> str:
    counts = Counter(r["reason"] for r in rejects)
    return ", ".join(f"{n} {reason}" for reason, n in counts.most_common()) or "none"


def reject_order(record: dict[str, Any]) -> tuple[int, str, int]:
    """Rejects in file order (train, validation, test), so rejects.jsonl reads alongside the files."""
    order = {"train": 0, "validation": 1, "test": 2}
    return order.get(record["split"], 3), record["source"], record["row"]


def require_rows(part: FilePart, unit: str = "rows") -> None:
    """A file that loses every row is an error; the message says why they went and shows the first one."""
    if len(part.frame):
        return
    first = part.rejects[0] if part.rejects else None
    example = f"; first: row {first['row']} {first['reason']} ({first['detail']})" if first else ""
    error = DataError(
        f"{part.path}: no usable {unit} after cleaning ({len(part.rejects)} rejected: "
        f"{_reason_summary(part.rejects)}){example}"
    )
    error.rejects = part.rejects  # type: ignore[attr-defined]  # for callers that want to write them anyway
    raise error


def split_parts(train: FilePart, held_out: dict[str, FilePart], cfg: DataConfig, public: Callable[[pd.DataFrame],
                pd.DataFrame], unit: str = "rows") -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]], list[str]]:
    """The last steps of a reader whose rows have no label to stratify by (generation, translation): every file
    must keep rows, validation and test come from their files or are carved from train, and the rejects of all
    files are gathered in file order. Returns the public frames, the rejects and the warnings."""
    parts = [train, *held_out.values()]
    for part in parts:
        part.mark("final")
        require_rows(part, unit)
    warnings: list[str] = []
    splits = splits_from_files_or_train(
        train.frame,
        {name: part.frame for name, part in held_out.items()},
        validation_share=cfg.split.validation, test_share=cfg.split.test,
        seed=cfg.seed, stratify=False, source=train.path, warnings=warnings,
    )
    frames = {name: public(frame) for name, frame in splits.items()}
    rejects = sorted((r for p in parts for r in p.rejects), key=reject_order)
    return frames, rejects, warnings


# ------------------------------------------------------------------------------------------- stages


def _clean_train(part: FilePart, cfg: DataConfig, given: list[str] | None) -> None:
    clean = cfg.clean
    part.apply(filter_rows(part.frame, clean, "train", True, set(given) if given else None, "data.labels"))
    part.mark("cleaned")
    require_rows(part)
    part.frame = add_fingerprints(part.frame)
    if clean.drop_conflicting_labels:
        part.apply(drop_conflicts(part.frame, "train"))
    part.apply(drop_duplicates(part.frame, clean, "train"))
    part.mark("deduplicated")


def _clean_eval(part: FilePart, cfg: DataConfig, labels: set[str], labels_from: str) -> None:
    part.apply(filter_rows(part.frame, cfg.clean, part.split, True, labels, labels_from))
    part.mark("cleaned")
    part.frame = add_fingerprints(part.frame)
    part.apply(drop_duplicates(part.frame, cfg.clean, part.split))
    part.mark("deduplicated")


def _remove_leakage(train: FilePart, held_out: dict[str, FilePart], enabled: bool) -> None:
    """Validation rows also in test leave validation; train rows in either leave train."""
    if enabled:
        if "validation" in held_out and "test" in held_out:
            validation = held_out["validation"]
            validation.apply(drop_leakage(validation.frame, [("test", held_out["test"].frame)], "validation"))
        others = [(name, part.frame) for name, part in held_out.items()]
        train.apply(drop_leakage(train.frame, others, "train"))
    for part in (train, *held_out.values()):
        part.mark("leakage removed")


def _final_labels(train: FilePart, held_out: dict[str, FilePart], given: list[str] | None) -> list[str]:
    """The label set; when inferred, a label left with no training rows leaves held-out sets too."""
    if given is not None:
        return given
    labels = sorted(set(train.frame["label"]))
    for part in held_out.values():
        part.apply(filter_unknown(part.frame, set(labels), part.split, "the training labels"))
    return labels


def _label_warnings(train_rejects: list[dict[str, Any]]) -> list[str]:
    unknown = Counter(r["label"] for r in train_rejects if r["reason"] == "unknown_label")
    if not unknown:
        return []
    shown = ", ".join(f"'{label}': {n}" for label, n in unknown.most_common(5))
    return [
        f"{sum(unknown.values())} training rows have labels outside data.labels and were dropped ({shown})"
    ]


def _check_classes(train: FilePart) -> None:
    present = sorted(set(train.frame["label"]))
    if len(present) < 2:
        raise DataError(
            f"{train.path}: only one label ('{present[0]}') in the training data; classification needs at "
            "least two"
        )


# ------------------------------------------------------------------------------------------- public API


def prepare_data(
    cfg: DataConfig, count_tokens: Callable[[list[str]], list[int]] | None = None,
    extra_columns: Extras | None = None,
) -> PreparedData:
    """Load, clean, de-duplicate, de-leak and split the recipe's data (see the module docstring).

    ``extra_columns`` ({column: recipe key}) are side columns every file must have (a fairness group): they ride
    along as ``extra:<column>`` through every stage and reach the splits, never the model.
    """
    if not cfg.train:
        raise DataError(
            "data.train is not set; give the training file in the recipe or with --set data.train=PATH"
        )
    given = _given_labels(cfg)
    train = _read_part("train", cfg.train, cfg, extra_columns=extra_columns)
    held_out = {name: _read_part(name, getattr(cfg, name), cfg, extra_columns=extra_columns)
                for name in EVAL_SPLITS if getattr(cfg, name)}

    _clean_train(train, cfg, given)
    require_rows(train)
    label_set = set(given) if given is not None else set(train.frame["label"])
    labels_from = "data.labels" if given is not None else "the training labels"
    for part in held_out.values():
        _clean_eval(part, cfg, label_set, labels_from)
    _remove_leakage(train, held_out, cfg.clean.remove_leakage)
    require_rows(train)
    labels = _final_labels(train, held_out, given)
    for part in (train, *held_out.values()):
        part.mark("final")
        require_rows(part)
    _check_classes(train)

    warnings = _label_warnings(train.rejects)
    rest, carved_val, carved_test = carve_splits(
        train.frame,
        validation_share=0.0 if "validation" in held_out else cfg.split.validation,
        test_share=0.0 if "test" in held_out else cfg.split.test,
        seed=cfg.seed,
        stratify=cfg.split.stratify,
        source=train.path,
        warnings=warnings,
    )
    frames = {
        "train": _public(rest),
        "validation": _public(held_out["validation"].frame if "validation" in held_out else carved_val),
        "test": _public(held_out["test"].frame if "test" in held_out else carved_test),
    }
    parts = [train, *held_out.values()]
    rejects = sorted((r for part in parts for r in part.rejects), key=reject_order)
    stages = {
        stage: sum(part.stages[stage] for part in parts)
        for stage in ("read", "cleaned", "deduplicated", "leakage removed", "final")
    }
    report = build_report(
        sources={"train": train.path, **{name: getattr(cfg, name) for name in EVAL_SPLITS}},
        split_from_train={name: name not in held_out for name in EVAL_SPLITS},
        rows_read={part.split: part.stages["read"] for part in parts},
        frames=frames,
        rejects=rejects,
        stages=stages,
        labels=labels,
        count_tokens=count_tokens,
        warnings=warnings,
    )
    return PreparedData(frames["train"], frames["validation"], frames["test"], labels, rejects, report)


def load_labelled_file(
    path: str | Path, cfg: DataConfig, split: str = "eval", require_label: bool = True,
    extra_columns: Extras | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read and clean one file on its own (``tailor eval --data``, ``tailor predict --input``).

    With ``require_label`` the rows are checked against ``cfg.labels`` (the model's labels) and exact / near
    duplicates inside the file are dropped, as for a test split. Without it (predict) every row with a usable
    text is kept, duplicates included, since each input row should get its prediction.
    """
    part = _read_part(split, path, cfg, require_label, extra_columns)
    given = _given_labels(cfg) if require_label else None
    labels_from = "the model's labels" if split in ("eval", "predict") else "data.labels"
    part.apply(
        filter_rows(part.frame, cfg.clean, split, require_label, set(given) if given else None, labels_from)
    )
    if require_label:
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


def write_rejects(path: Path, rejects: list[dict[str, Any]]) -> None:
    """rejects.jsonl: one JSON object per line, UTF-8; an empty file when nothing was rejected."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", errors="backslashreplace", newline="\n") as handle:
        for record in rejects:
            handle.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
