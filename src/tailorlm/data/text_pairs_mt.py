"""Reading source/target text pairs (translation): load, clean, reject, de-duplicate, de-leak and split.

The same order as for labelled texts (``tailorlm.data.prepare``): per-row checks, duplicates inside each file,
leakage between files, then carving validation/test from train. Files are read by ``tailorlm.data.load`` (every
format it knows), with the source column in the text slot and the target column in the label slot. Frames use
``src_text``/``tgt_text`` for the texts because ``source`` already names the file each row came from.

Leakage is judged on the whole pair (source and target): a source that recurs with another translation (a
greeting, a UI string, a templated sentence) is legitimate variety, and dropping it from training would empty
templated data. How many held-out sources training also has is reported (``source_overlap``), not dropped.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailorlm.data.clean import clean_text
from tailorlm.data.load import clip, read_table
from tailorlm.data.prepare import FilePart, require_rows, split_parts
from tailorlm.data.report import length_stats
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig

PAIR_COLUMNS = ["src_text", "tgt_text", "source", "row"]
SPLITS = ("train", "validation", "test")
STAGES = ("read", "cleaned", "deduplicated", "leakage removed", "final")
REASONS = (
    "malformed_row", "empty_text", "empty_target", "too_short", "too_long", "duplicate", "near_duplicate", "leakage",
)

TokenCounter = Callable[[list[str]], list[int]]


@dataclass
class PairData:
    """Three cleaned splits of pairs, every dropped row, the quality report, and task settings to carry along."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    rejects: list[dict[str, Any]]
    report: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Pairs have no label set; empty so code written for labelled data (``tailor prepare``) still works."""
        return []


@dataclass
class _Part(FilePart):
    """A file of pairs on its way through cleaning."""

    def drop(self, mask: pd.Series, reason: str, detail: str | list[str]) -> None:
        """Move the rows where ``mask`` holds into rejects, each with its reason and detail."""
        if not bool(mask.any()):
            return
        gone = self.frame[mask]
        details = detail if isinstance(detail, list) else [detail] * len(gone)
        for (_, row), text in zip(gone.iterrows(), details, strict=True):
            self.rejects.append(pair_reject(self.split, self.path, row["row"], reason, text,
                                            row["raw_src"], row["raw_tgt"]))
        self.frame = self.frame[~mask]


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


def read_pairs(path: str | Path, cfg: DataConfig, split: str) -> _Part:
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
    part = _Part(split, source, work, rejects)
    part.stages["read"] = raw.rows_read
    return part


def filter_pairs(part: _Part, cfg: DataConfig) -> None:
    """Per-row checks: an empty side, a source too short or too long (data.clean.min_chars / max_chars)."""
    clean = cfg.clean
    part.drop(part.frame["src_text"].str.len() == 0, "empty_text", f"the source ({cfg.source_column}) is empty")
    part.drop(part.frame["tgt_text"].str.len() == 0, "empty_target",
              f"the target ({cfg.target_column}) is empty; a pair needs its translation")
    lengths = part.frame["src_text"].str.len()
    short = lengths < clean.min_chars
    part.drop(short, "too_short",
              [f"{n} characters after cleaning; data.clean.min_chars is {clean.min_chars}" for n in lengths[short]])
    if clean.max_chars is not None:
        lengths = part.frame["src_text"].str.len()
        long = lengths > clean.max_chars
        part.drop(long, "too_long",
                  [f"{n} characters after cleaning; data.clean.max_chars is {clean.max_chars}" for n in lengths[long]])
    part.mark("cleaned")


def dedupe_pairs(part: _Part, cfg: DataConfig) -> None:
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
    part.mark("deduplicated")


def _drop_repeats(part: _Part, key: pd.Series, reason: str, what: str) -> None:
    mask = key.duplicated(keep="first")
    if not bool(mask.any()):
        return
    first_row = part.frame["row"].groupby(key, sort=False).transform("first")
    part.drop(mask, reason, [f"{what} row {int(r)}" for r in first_row[mask]])


def remove_leakage(train: _Part, held_out: dict[str, _Part], enabled: bool) -> None:
    """A pair (source and target, folded) seen in training and scored again in validation/test would flatter the
    model: it leaves train. A shared source alone is reported (:func:`source_overlap`), not dropped."""
    if enabled and held_out:
        seen: dict[str, str] = {}
        for name, part in held_out.items():
            for fp, row in zip(part.frame["fp"], part.frame["row"], strict=True):
                seen.setdefault(fp, f"same pair as {name} row {int(row)}")
        mask = train.frame["fp"].isin(seen.keys())
        train.drop(mask, "leakage", [seen[fp] for fp in train.frame["fp"][mask]])
    for part in (train, *held_out.values()):
        part.mark("leakage removed")


def source_overlap(frames: dict[str, pd.DataFrame]) -> dict[str, dict[str, int]]:
    """Per held-out split, how many rows have a source sentence that training also has (with another target)."""
    in_train = {pair_fingerprint(s) for s in frames["train"]["src_text"]}
    return {name: {"rows": sum(pair_fingerprint(s) in in_train for s in frames[name]["src_text"]),
                   "of": len(frames[name])} for name in ("validation", "test")}


def _public(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[PAIR_COLUMNS].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- report


def pair_report(parts: list[_Part], frames: dict[str, pd.DataFrame], sources: dict[str, str | None],
                split_from_train: dict[str, bool], rejects: list[dict[str, Any]],
                count_tokens: TokenCounter | None, warnings: list[str]) -> dict[str, Any]:
    """The data report, with the classification report's keys where they mean the same thing."""
    rejected = Counter(r["split"] for r in rejects)
    removed = Counter("malformed_row" if r["reason"] == "malformed_json" else r["reason"] for r in rejects)
    return {
        "sources": dict(sources),
        "split_from_train": dict(split_from_train),
        "rows_read": {name: int(next((p.stages["read"] for p in parts if p.split == name), 0)) for name in SPLITS},
        "rows_kept": {name: len(frames[name]) for name in SPLITS},
        "rows_rejected": {name: int(rejected.get(name, 0)) for name in SPLITS},
        "removed": {reason: int(removed.get(reason, 0)) for reason in REASONS},
        "stages": [{"stage": s, "rows": int(sum(p.stages.get(s, 0) for p in parts))} for s in STAGES],
        "length_unit": "tokens" if count_tokens else "words",
        "length": _lengths(frames, "src_text", count_tokens),
        "target_length": _lengths(frames, "tgt_text", count_tokens),
        "source_overlap": source_overlap(frames),
        "warnings": warnings,
    }


def _lengths(frames: dict[str, pd.DataFrame], column: str, count_tokens: TokenCounter | None) -> dict[str, Any]:
    texts = {name: frames[name][column].tolist() for name in SPLITS}
    everything = [t for name in SPLITS for t in texts[name]]
    counts = list(count_tokens(everything)) if count_tokens else [len(t.split()) for t in everything]
    stats, start = {}, 0
    for name in SPLITS:
        end = start + len(texts[name])
        stats[name] = length_stats([int(c) for c in counts[start:end]])
        start = end
    return stats


# ------------------------------------------------------------------------------------------- public API


def prepare_pairs(cfg: DataConfig, count_tokens: TokenCounter | None = None) -> PairData:
    """Load, clean, de-duplicate, de-leak and split the recipe's pairs (see the module docstring)."""
    if not cfg.train:
        raise DataError("data.train is not set; give the file of source/target pairs in the recipe or with "
                        "--set data.train=PATH")
    train = read_pairs(cfg.train, cfg, "train")
    held_out = {name: read_pairs(getattr(cfg, name), cfg, name) for name in ("validation", "test")
                if getattr(cfg, name)}
    for part in (train, *held_out.values()):
        filter_pairs(part, cfg)
        require_rows(part, "pairs")
        dedupe_pairs(part, cfg)
    remove_leakage(train, held_out, cfg.clean.remove_leakage)
    parts = [train, *held_out.values()]
    frames, rejects, warnings = split_parts(train, held_out, cfg, _public, "pairs")
    if len(frames["test"]) < 20:
        warnings.append(f"only {len(frames['test'])} test pairs: BLEU and chrF on so few sentences are noisy")
    report = pair_report(
        parts, frames, {"train": train.path, "validation": cfg.validation, "test": cfg.test},
        {name: name not in held_out for name in ("validation", "test")}, rejects, count_tokens, warnings,
    )
    return PairData(frames["train"], frames["validation"], frames["test"], rejects, report)


def load_pair_file(path: str | Path, cfg: DataConfig, split: str = "eval") -> tuple[pd.DataFrame, list[dict]]:
    """One file of pairs on its own (``tailor eval``): cleaned and de-duplicated like a test split."""
    part = read_pairs(path, cfg, split)
    filter_pairs(part, cfg)
    if len(part.frame):
        dedupe_pairs(part, cfg)
    return _public(part.frame), part.rejects
