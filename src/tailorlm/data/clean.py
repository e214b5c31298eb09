"""Cleaning: normalise texts, then drop the rows a model should not learn from or be scored on.

Every step takes a working frame and returns the rows it keeps plus one reject record per row it drops, so
that ``rows read = rows kept + rows rejected`` holds for every file and each drop can be traced to its row and
reason. The working frame has the columns ``text`` (cleaned), ``raw_text`` (as read), ``label``, ``source``,
``row`` and, after :func:`add_fingerprints`, ``fingerprint``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from tailorlm.data.load import EXTRA_PREFIX, RawTable, clip
from tailorlm.recipe import CleanConfig

REASONS = (
    "malformed_row",
    "empty_text",
    "too_short",
    "too_long",
    "missing_label",
    "unknown_label",
    "duplicate",
    "near_duplicate",
    "conflicting_label",
    "leakage",
)
# Zero-width and bidirectional formatting characters, the soft hyphen, and lone surrogates (which cannot
# even be written as UTF-8): invisible, so two texts that look the same would otherwise differ.
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)
# Control characters that Python counts as whitespace become spaces; the others are removed (\t \n \r are kept
# for the whitespace step to handle).
_SPACE_CONTROLS = re.compile("[\x0b\x0c\x1c-\x1f\x85]")
_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f]")
_ANY_ODD = re.compile(_INVISIBLE.pattern[:-1] + _SPACE_CONTROLS.pattern[1:-1] + _CONTROLS.pattern[1:])
_NOT_LETTERS = re.compile(r"[\W\d_]+")
# ASCII fast path of the fingerprint (most texts): delete every ASCII character that is not a letter.
_ASCII_NOT_LETTERS = bytes(c for c in range(128) if not chr(c).isalpha())
_NOT_ALNUM = re.compile(r"[\W_]+")
_ASCII_NOT_ALNUM = bytes(c for c in range(128) if not chr(c).isalnum())


# ------------------------------------------------------------------------------------------- text


def clean_text(text: str, cfg: CleanConfig) -> str:
    """One text as the model will see it: invisible characters gone, NFKC, whitespace collapsed (per cfg)."""
    if _ANY_ODD.search(text):  # one scan for the common case of nothing to remove
        text = _INVISIBLE.sub("", text)
        text = _CONTROLS.sub("", _SPACE_CONTROLS.sub(" ", text))
    if cfg.normalize_unicode:
        text = unicodedata.normalize("NFKC", text)
    text = " ".join(text.split()) if cfg.normalize_whitespace else text
    return text.lower() if cfg.lowercase else text


#: tailor_model.json key holding the run's ``data.clean``: inputs of a saved model get the training texts' cleaning
CLEAN_META_KEY = "clean"


def saved_cleaning(meta: dict[str, Any]) -> CleanConfig:
    """The ``data.clean`` a saved model was trained with (tailor_model.json), so eval, predict, serve and audit
    clean their inputs as the training texts were: a model trained lower-cased must not be served mixed case.

    Models saved before the key existed get the defaults, which is what they were always given; keys this
    version does not know (a newer tailorlm saved the model) are ignored.
    """
    from pydantic import ValidationError

    from tailorlm.errors import ModelError

    saved = meta.get(CLEAN_META_KEY)
    if not isinstance(saved, dict):
        return CleanConfig()
    try:
        return CleanConfig(**{k: v for k, v in saved.items() if k in CleanConfig.model_fields})
    except ValidationError as exc:
        raise ModelError(f"tailor_model.json: '{CLEAN_META_KEY}' is invalid ({exc.errors()[0]['msg']}); "
                         "re-save the model with tailor") from None


def clean_label(label: str | None) -> str | None:
    """Labels are compared as stripped strings; an empty label is a missing one."""
    if label is None:
        return None
    label = _INVISIBLE.sub("", label).strip()
    return label or None


def fingerprint(text: str, keep_digits: bool = False) -> str:
    """Text folded for near-duplicate detection: casefold, drop accents, punctuation, digits and whitespace.

    A text made only of digits and punctuation would fold to "" and collide with every other such text, so it
    keeps its casefolded form instead. ``keep_digits`` keeps the digits, for texts whose numbers are the
    content: two QA passages that differ only in their prices or times answer different questions.
    """
    if text.isascii():
        drop = _ASCII_NOT_ALNUM if keep_digits else _ASCII_NOT_LETTERS
        return text.lower().encode("ascii").translate(None, drop).decode("ascii") or text.lower()
    folded = unicodedata.normalize("NFKD", text.casefold())
    return (_NOT_ALNUM if keep_digits else _NOT_LETTERS).sub("", folded) or text.casefold()


def working_frame(raw: RawTable, source: str, cfg: CleanConfig) -> pd.DataFrame:
    """The parsed records of one file with cleaned texts and labels, in file order."""
    frame = raw.frame
    texts = [clean_text(t, cfg) if t is not None else "" for t in frame["raw_text"].tolist()]
    raw_labels = frame["raw_label"].tolist()
    cleaned = {label: clean_label(label) for label in set(raw_labels)}  # few distinct labels: clean each once
    labels = [cleaned[label] for label in raw_labels]
    working = pd.DataFrame(
        {
            "text": pd.Series(texts, dtype=object),
            "raw_text": pd.Series(frame["raw_text"].tolist(), dtype=object),
            "label": pd.Series(labels, dtype=object),
            "source": source,
            "row": frame["row"].to_numpy(),
        }
    )
    for name in (c for c in frame.columns if c.startswith(EXTRA_PREFIX)):  # side columns ride along, untouched
        working[name] = pd.Series(frame[name].tolist(), dtype=object)
    return working


def add_fingerprints(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["fingerprint"] = pd.Series(
        [fingerprint(t) for t in frame["text"].tolist()], index=frame.index, dtype=object
    )
    return frame


# ------------------------------------------------------------------------------------------- rejects


def reject(
    split: str, source: str, row: int, reason: str, detail: str, text: str | None, label: str | None
) -> dict[str, Any]:
    """One rejects.jsonl record; ``text`` is the text as read (clipped), so the row can be found."""
    return {
        "split": split,
        "source": source,
        "row": int(row),
        "reason": reason,
        "detail": detail,
        "text": clip(text),
        "label": label,
    }


def malformed_rejects(raw: RawTable, split: str, source: str) -> list[dict[str, Any]]:
    return [
        reject(split, source, r["row"], r["reason"], r["detail"], r["text"], r["label"]) for r in raw.rejects
    ]


Detail = str | Callable[[pd.DataFrame], Iterable[str]]


def split_off(
    frame: pd.DataFrame, mask: pd.Series, split: str, reason: str, detail: Detail
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Remove the rows where ``mask`` is true, returning the kept rows and a reject per removed row.

    ``detail`` is a fixed string or a function of the dropped rows: details are only built for rows that go.
    """
    if not bool(mask.any()):
        return frame, []
    dropped = frame[mask]
    details = [detail] * len(dropped) if isinstance(detail, str) else list(detail(dropped))
    return frame[~mask], frame_rejects(dropped, split, reason, details)


def frame_rejects(rows: pd.DataFrame, split: str, reason: str, details: list[str]) -> list[dict[str, Any]]:
    """One reject per row of a working frame (text as read, label), each with its own detail."""
    return [
        reject(split, source, row, reason, text_detail, raw, label)
        for source, row, raw, label, text_detail in zip(
            rows["source"], rows["row"], rows["raw_text"], rows["label"], details, strict=True
        )
    ]


def _label_list(labels: Iterable[str], limit: int = 8) -> str:
    ordered = sorted(labels)
    shown = ", ".join(ordered[:limit])
    return shown + (", ..." if len(ordered) > limit else "")


# ------------------------------------------------------------------------------------------- row filters


def filter_rows(
    frame: pd.DataFrame,
    cfg: CleanConfig,
    split: str,
    require_label: bool,
    labels: set[str] | None = None,
    labels_from: str = "data.labels",
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Per-row checks: empty, too short, too long, missing label, and (given a label set) unknown label."""
    rejects: list[dict[str, Any]] = []
    lengths = frame["text"].str.len()
    frame, out = split_off(frame, lengths == 0, split, "empty_text", "empty after cleaning")
    rejects += out
    lengths = frame["text"].str.len()
    short = lengths < cfg.min_chars
    frame, out = split_off(
        frame,
        short,
        split,
        "too_short",
        lambda rows: [
            f"{len(t)} characters after cleaning; data.clean.min_chars is {cfg.min_chars}"
            for t in rows["text"]
        ],
    )
    rejects += out
    if cfg.max_chars is not None:
        lengths = frame["text"].str.len()
        frame, out = split_off(
            frame,
            lengths > cfg.max_chars,
            split,
            "too_long",
            lambda rows: [
                f"{len(t)} characters after cleaning; data.clean.max_chars is {cfg.max_chars}"
                for t in rows["text"]
            ],
        )
        rejects += out
    if require_label:
        frame, out = split_off(frame, frame["label"].isna(), split, "missing_label", "the label is empty")
        rejects += out
        if labels is not None:
            frame, out = filter_unknown(frame, labels, split, labels_from)
            rejects += out
    return frame, rejects


def filter_unknown(
    frame: pd.DataFrame, labels: set[str], split: str, labels_from: str
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Rows whose label is outside the label set: a model cannot predict them, so they cannot be scored."""
    unknown = ~frame["label"].isin(labels)
    known = _label_list(labels)
    return split_off(
        frame,
        unknown,
        split,
        "unknown_label",
        lambda rows: [f"label '{label}' is not in {labels_from} ({known})" for label in rows["label"]],
    )


# ------------------------------------------------------------------------------------------- duplicates


def drop_conflicts(frame: pd.DataFrame, split: str) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The same (folded) text with different labels is label noise: every copy goes, not just later ones."""
    counts = frame.groupby("fingerprint", sort=False)["label"].transform("nunique")
    mask = counts > 1
    if not bool(mask.any()):
        return frame, []
    groups: dict[str, list[tuple[int, str]]] = {}
    for fp, row, label in zip(
        frame["fingerprint"][mask], frame["row"][mask], frame["label"][mask], strict=True
    ):
        groups.setdefault(fp, []).append((int(row), label))

    def details(rows: pd.DataFrame) -> list[str]:
        out = []
        for fp, label in zip(rows["fingerprint"], rows["label"], strict=True):
            row, other = next((r, lab) for r, lab in groups[fp] if lab != label)
            out.append(f"same text as row {row} labelled '{other}'")
        return out

    return split_off(frame, mask, split, "conflicting_label", details)


def _drop_repeats(
    frame: pd.DataFrame, key: pd.Series, split: str, reason: str, what: str
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    mask = key.duplicated(keep="first")
    if not bool(mask.any()):
        return frame, []
    first_row = frame["row"].groupby(key, sort=False).transform("first")
    return split_off(
        frame, mask, split, reason, lambda rows: [f"{what} row {int(r)}" for r in first_row[mask]]
    )


def drop_duplicates(
    frame: pd.DataFrame, cfg: CleanConfig, split: str
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Exact duplicates (same cleaned text and label), then near duplicates (same fingerprint and label).

    Keyed on the label too: same-text rows with different labels are conflicts, handled (in train) by
    :func:`drop_conflicts` or kept on purpose when that is switched off.
    """
    rejects: list[dict[str, Any]] = []
    if frame.empty:  # nothing to compare; an empty frame's columns may have lost their string dtype
        return frame, rejects
    label = frame["label"].fillna("")
    if cfg.drop_duplicates:
        frame, out = _drop_repeats(frame, frame["text"] + "\x00" + label, split, "duplicate", "duplicate of")
        rejects += out
        label = frame["label"].fillna("")
    if cfg.drop_near_duplicates:
        key = frame["fingerprint"] + "\x00" + label
        frame, out = _drop_repeats(frame, key, split, "near_duplicate", "near duplicate of")
        rejects += out
    return frame, rejects
