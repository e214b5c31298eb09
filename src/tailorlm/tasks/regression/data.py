"""Texts (or text pairs) with a float target: the regression row spec of the shared pipeline, and one file for
``tailor eval``.

A row is ``text`` (and ``pair`` when ``data.text_pair_column`` is set, STS-B style) with ``target``, a finite
float read from ``data.label_column``. A target that is not a number is rejected (``bad_target``). Duplicates and
leakage are judged on the text (with its pair): the same text twice with two scores keeps the first, since a
split cannot hold both fairly. Reading, the order of the steps and splitting are data/pipeline.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from tailorlm.data.clean import (
    REASONS,
    add_fingerprints,
    clean_text,
    drop_duplicates,
    filter_rows,
    fingerprint,
    malformed_rejects,
    split_off,
    working_frame,
)
from tailorlm.data.load import EXTRA_PREFIX, read_table
from tailorlm.data.pipeline import FilePart, Files, LeakRule, RowSpec, TokenCounter, reject_order
from tailorlm.recipe import DataConfig

COLUMNS = ["text", "pair", "target", "label", "source", "row"]
REPORT_KEYS = ("sources", "split_from_train", "rows_read", "rows_kept", "rows_rejected", "removed", "stages",
               "target", "length_unit", "length", "warnings")


def parse_target(value: Any) -> float | None:
    """A finite float, or None (the row is rejected)."""
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def target_summary(frame: pd.DataFrame) -> dict[str, Any]:
    values = frame["target"].astype(float)
    if values.empty:
        return {"n": 0}
    return {"n": len(values), "mean": round(float(values.mean()), 6), "std": round(float(values.std(ddof=0)), 6),
            "min": float(values.min()), "max": float(values.max())}


@dataclass(frozen=True)
class RegressionRows(RowSpec):
    """A text (and optionally its pair) with a float target; ``pair_column`` is ``data.text_pair_column``."""

    pair_column: str | None = None
    reasons: ClassVar[tuple[str, ...]] = (*REASONS, "bad_target")
    report_keys: ClassVar[tuple[str, ...]] = REPORT_KEYS
    leak_rules: ClassVar[tuple[LeakRule, ...]] = (
        LeakRule("leakage", lambda frame: frame["fingerprint"], lambda split, row: f"same text as {split} row {row}"),
    )

    def read(self, split: str, path: str | Path, cfg: DataConfig) -> FilePart:
        extras = {self.pair_column: "data.text_pair_column"} if self.pair_column else None
        raw = read_table(path, fmt=cfg.format, text_column=cfg.text_column, label_column=cfg.label_column,
                         require_label=True, split=split, max_rows=cfg.max_rows, extra_columns=extras,
                         max_bytes=cfg.max_file_bytes)
        source = str(path)
        frame = working_frame(raw, source, cfg.clean)
        if self.pair_column:
            pairs = frame.pop(EXTRA_PREFIX + self.pair_column).tolist()
            frame["pair"] = [clean_text(str(p), cfg.clean) if p is not None else "" for p in pairs]
        else:
            frame["pair"] = None
        frame["target"] = [parse_target(v) if v is not None else None for v in frame["label"]]
        return FilePart.of(split, source, frame, malformed_rejects(raw, split, source), raw.rows_read)

    def clean(self, part: FilePart, files: Files) -> None:
        """Empty, too short or too long texts, missing targets, targets that are not finite numbers."""
        part.apply(filter_rows(part.frame, files.cfg.clean, part.split, True, None))
        bad = part.frame["target"].isna()
        part.apply(split_off(part.frame, bad, part.split, "bad_target",
                             lambda rows: [f"'{v}' in {files.cfg.label_column} is not a finite number"
                                           for v in rows["label"]]))
        if self.pair_column:
            empty = part.frame["pair"].str.len() == 0
            part.apply(split_off(part.frame, empty, part.split, "empty_text",
                                 f"{self.pair_column} is empty after cleaning"))

    def dedupe(self, part: FilePart, files: Files) -> None:
        """Exact and near duplicates of the text (with its pair), whatever their targets: the first is kept."""
        frame = add_fingerprints(part.frame)
        if self.pair_column:
            frame["fingerprint"] = [f + "\x1f" + fingerprint(p) for f, p in zip(frame["fingerprint"], frame["pair"],
                                                                                 strict=True)]
            frame["text_key"] = frame["text"]
            frame["text"] = frame["text"] + "\x1f" + frame["pair"]
        kept, rejects = drop_duplicates(frame.assign(label=None), files.cfg.clean, part.split)
        kept = kept.assign(label=frame.loc[kept.index, "label"])
        if self.pair_column:
            kept = kept.assign(text=kept.pop("text_key"))
        part.frame = kept
        part.rejects.extend(rejects)

    def public(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[COLUMNS].reset_index(drop=True)
        return out.astype({"target": float})

    def report_extras(self, files: Files, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                      labels: list[str], count_tokens: TokenCounter | None) -> dict[str, Any]:
        return {"target": {name: target_summary(frame) for name, frame in frames.items()}}


def load_scored_file(path: str | Path, cfg: DataConfig, pair_column: str | None, split: str = "eval",
                     dedupe: bool = True) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Read and clean one file on its own (``tailor eval --data``); duplicates dropped as for a test split only
    with ``dedupe`` (``tailor eval --clean``): by default every row the user gave is scored."""
    rows = RegressionRows(pair_column)
    part = rows.read(split, path, cfg)
    files = Files(cfg, part, {})
    rows.clean(part, files)
    if dedupe:
        rows.dedupe(part, files)
    return rows.public(part.frame), sorted(part.rejects, key=reject_order)
