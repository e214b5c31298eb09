"""Reading source/target text pairs (translation): the row spec (:class:`PairRows`) of the shared pipeline.

The steps and their order are data/pipeline.py's, as for every task: per-row checks, duplicates inside each file,
leakage between files, then carving validation/test from train. Files are read by ``tailorlm.data.load`` (every
format it knows), with the source column in the text slot and the target column in the label slot. Frames use
``src_text``/``tgt_text`` for the texts because ``source`` already names the file each row came from.

Leakage is judged on the whole pair (source and target): a source that recurs with another translation (a
greeting, a UI string, a templated sentence) is legitimate variety, and dropping it from training would empty
templated data. How many held-out sources training also has is reported (``source_overlap``), not dropped.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd

from tailorlm.data.clean import clean_text
from tailorlm.data.load import clip, read_table
from tailorlm.data.pipeline import SPLITS, FilePart, Files, LeakRule, RowSpec, TokenCounter, drop_rows
from tailorlm.data.report import lengths_by_split
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

PAIR_COLUMNS = ["src_text", "tgt_text", "source", "row"]
REASONS = (
    "malformed_row", "empty_text", "empty_target", "too_short", "too_long", "duplicate", "near_duplicate", "leakage",
)
#: the data report's keys, in order
REPORT_KEYS = ("sources", "split_from_train", "rows_read", "rows_kept", "rows_rejected", "removed", "stages",
               "length_unit", "length", "target_length", "source_overlap", "warnings")
NO_TRAIN = ("data.train is not set; give the file of source/target pairs in the recipe or with --set "
            "data.train=PATH")


def pair_reject(split: str, source: str, row: int, reason: str, detail: str, text: str | None,
                target: str | None) -> dict[str, Any]:
    """One rejects.jsonl record; texts as read (clipped) so the row can be found in the file."""
    return {"split": split, "source": source, "row": int(row), "reason": reason, "detail": detail,
            "text": clip(text), "target": clip(target)}


# ------------------------------------------------------------------------------------------- reading


def pair_fingerprint(text: str) -> str:
    """Text folded for near-duplicate and leakage checks: case, accents, punctuation and spacing ignored.

    Unlike the labelled-text fingerprint, digits are kept: "reading 123" and "reading 456" need different
    translations, so they are different pairs.
    """
    folded = "".join(ch for ch in unicodedata.normalize("NFKD", text.casefold()) if ch.isalnum())
    return folded or text.casefold()



def _rename_keys(error: DataError) -> DataError:
    """The shared reader names the text/label keys; for pairs the user has to set source/target columns."""
    message = str(error).replace("data.text_column", "data.source_column").replace(
        "data.label_column", "data.target_column"
    ).replace("--text-column", "--text-column (the source column)").replace(
        "--label-column", "--label-column (the target column)"
    )
    return DataError(message)


def read_pairs(path: str | Path, cfg: DataConfig, split: str) -> FilePart:
    """Read one file of pairs and clean both sides; unparseable records are already rejects."""
    try:
        raw = read_table(path, fmt=cfg.format, text_column=cfg.source_column, label_column=cfg.target_column,
                         require_label=True, split=split, max_rows=cfg.max_rows, max_bytes=cfg.max_file_bytes)
    except DataError as exc:
        raise _rename_keys(exc) from None
    source = str(path)
    frame = raw.frame
    srcs, tgts = frame["raw_text"].tolist(), frame["raw_label"].tolist()
    work = pd.DataFrame({
        "src_text": pd.Series([clean_text(t, cfg.clean) if t else "" for t in srcs], dtype=object),
        "tgt_text": pd.Series([clean_text(t, cfg.clean) if t else "" for t in tgts], dtype=object),
        "raw_src": pd.Series(srcs, dtype=object),
        "raw_tgt": pd.Series(tgts, dtype=object),
        "source": source,
        "row": frame["row"].to_numpy(),
    })
    rejects = [pair_reject(split, source, r["row"], r["reason"], r["detail"], r["text"], None) for r in raw.rejects]
    return FilePart.of(split, source, work, rejects, raw.rows_read)


def _drop(part: FilePart, mask: pd.Series, reason: str, detail: str | list[str]) -> None:
    """Move the rows where ``mask`` holds into rejects, each with its reason and detail."""
    details = detail if isinstance(detail, list) else [detail] * int(mask.sum())
    drop_rows(part, PairRows(), mask, reason, details)


def filter_pairs(part: FilePart, cfg: DataConfig) -> None:
    """Per-row checks: an empty side, a source too short or too long (data.clean.min_chars / max_chars)."""
    clean = cfg.clean
    _drop(part, part.frame["src_text"].str.len() == 0, "empty_text", f"the source ({cfg.source_column}) is empty")
    _drop(part, part.frame["tgt_text"].str.len() == 0, "empty_target",
          f"the target ({cfg.target_column}) is empty; a pair needs its translation")
    lengths = part.frame["src_text"].str.len()
    short = lengths < clean.min_chars
    _drop(part, short, "too_short",
          [f"{n} characters after cleaning; data.clean.min_chars is {clean.min_chars}" for n in lengths[short]])
    if clean.max_chars is not None:
        lengths = part.frame["src_text"].str.len()
        long = lengths > clean.max_chars
        _drop(part, long, "too_long",
              [f"{n} characters after cleaning; data.clean.max_chars is {clean.max_chars}" for n in lengths[long]])


def dedupe_pairs(part: FilePart, cfg: DataConfig) -> None:
    """The same pair twice teaches nothing new and double-counts in scores; the first copy stays.

    Keyed on both sides: one source with two different translations is legitimate variety, not a duplicate.
    """
    frame = part.frame
    frame["src_fp"] = [pair_fingerprint(s) for s in frame["src_text"]]
    frame["fp"] = [f"{s}\x00{pair_fingerprint(t)}" for s, t in zip(frame["src_fp"], frame["tgt_text"], strict=True)]
    part.frame = frame
    if cfg.clean.drop_duplicates:
        _drop_repeats(part, part.frame["src_text"] + "\x00" + part.frame["tgt_text"], "duplicate", "duplicate of")
    if cfg.clean.drop_near_duplicates:
        _drop_repeats(part, part.frame["fp"], "near_duplicate", "near duplicate of")


def _drop_repeats(part: FilePart, key: pd.Series, reason: str, what: str) -> None:
    mask = key.duplicated(keep="first")
    if not bool(mask.any()):
        return
    first_row = part.frame["row"].groupby(key, sort=False).transform("first")
    _drop(part, mask, reason, [f"{what} row {int(r)}" for r in first_row[mask]])


def source_overlap(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Per held-out split, how many rows have a source sentence that training also has (with another target)."""
    in_train = {pair_fingerprint(s) for s in frames["train"]["src_text"]}
    return {name: {"rows": sum(pair_fingerprint(s) in in_train for s in frames[name]["src_text"]),
                   "of": len(frames[name])} for name in ("validation", "test")}


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[PAIR_COLUMNS].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- row spec


@dataclass(frozen=True)
class PairRows(RowSpec):
    """Source/target pairs (module docstring). A pair (source and target, folded) seen in training and scored
    again in validation/test would flatter the model: it leaves train. A shared source alone is reported
    (:func:`source_overlap`), not dropped; validation and test are not compared with each other."""

    unit: ClassVar[str] = "pairs"
    no_train: ClassVar[str] = NO_TRAIN
    require_each_file: ClassVar[bool] = True
    leak_between_held_out: ClassVar[bool] = False
    reasons: ClassVar[tuple[str, ...]] = REASONS
    report_keys: ClassVar[tuple[str, ...]] = REPORT_KEYS
    leak_rules: ClassVar[tuple[LeakRule, ...]] = (
        LeakRule("leakage", lambda frame: frame["fp"], lambda split, row: f"same pair as {split} row {row}"),
    )

    def read(self, split: str, path: str, cfg: DataConfig) -> FilePart:
        return read_pairs(path, cfg, split)

    def clean(self, part: FilePart, files: Files) -> None:
        filter_pairs(part, files.cfg)

    def dedupe(self, part: FilePart, files: Files) -> None:
        dedupe_pairs(part, files.cfg)

    def reject_rows(self, split: str, rows: pd.DataFrame, reason: str, details: list[str]) -> list[dict[str, Any]]:
        return [pair_reject(split, source, row, reason, detail, text, target) for source, row, text, target, detail
                in zip(rows["source"], rows["row"], rows["raw_src"], rows["raw_tgt"], details, strict=True)]

    def public(self, frame: pd.DataFrame) -> pd.DataFrame:
        return _public(frame)

    def length_texts(self, frame: pd.DataFrame) -> list[str]:
        return frame["src_text"].tolist()

    def warnings_after_split(self, files: Files, frames: dict[str, pd.DataFrame], labels: list[str]) -> list[str]:
        if len(frames["test"]) < 20:
            return [f"only {len(frames['test'])} test pairs: BLEU and chrF on so few sentences are noisy"]
        return []

    def report_extras(self, files: Files, frames: dict[str, pd.DataFrame], rejects: list[dict[str, Any]],
                      labels: list[str], count_tokens: TokenCounter | None) -> dict[str, Any]:
        targets = {name: frames[name]["tgt_text"].tolist() for name in SPLITS}
        return {"target_length": lengths_by_split(targets, count_tokens), "source_overlap": source_overlap(frames)}

    def result_fields(self, files: Files, frames: dict[str, pd.DataFrame]) -> dict[str, Any]:
        return {"meta": {}}


# ------------------------------------------------------------------------------------------- one file


def load_pair_file(path: str | Path, cfg: DataConfig, split: str = "eval",
                   dedupe: bool = True) -> tuple[pd.DataFrame, list[dict]]:
    """One file of pairs on its own (``tailor eval``): cleaned, and with ``dedupe`` de-duplicated like a test split."""
    part = read_pairs(path, cfg, split)
    filter_pairs(part, cfg)
    if len(part.frame) and dedupe:
        dedupe_pairs(part, cfg)
    return _public(part.frame), part.rejects
