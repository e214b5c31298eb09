"""The unlabelled domain corpus of continued pretraining: read, cleaned, leak-free, split into train and holdout.

The texts come from ``adapt.text`` (when given) plus the training split's texts (labels unused). A line that is a
near-duplicate of a validation or test text (the same fingerprint as data preparation's leak check, data/clean.py:
case, accents, punctuation, digits and spacing folded) is dropped and counted: pretraining on the test texts would
let the model memorise them and inflate every score the report proves.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tailorlm.data.clean import clean_text, fingerprint
from tailorlm.data.load import read_records
from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import DataError
from tailorlm.recipe import AdaptConfig, CleanConfig, Recipe

#: text-bearing columns of the prepared splits of the tasks other than classification (which has ``text``)
TEXT_COLUMNS = ("prompt", "response", "question", "context", "source", "target", "tokens")


@dataclass
class Corpus:
    """Texts to pretrain on, texts held out for perplexity, and how many lines each filter removed."""

    train: list[str]
    holdout: list[str]
    counts: dict[str, int] = field(default_factory=dict)


def _as_text(value: Any) -> str:
    """A cell as text: token lists joined by spaces, missing cells empty."""
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    if value is None or (isinstance(value, float) and value != value):  # NaN: a missing parquet/pandas cell
        return ""
    return str(value)


def frame_texts(frame: pd.DataFrame) -> list[str]:
    """The texts of a prepared split: its ``text`` column, or each non-empty text field of each row (a QA
    context shared by many questions then counts once). Generation's ``context`` repeats the prompt as JSON
    chat turns, so it is left out."""
    if "text" in frame.columns:
        columns = ["text"]
    else:
        columns = [c for c in TEXT_COLUMNS if c in frame.columns and not (c == "context" and "kind" in frame.columns)]
    texts = (_as_text(value).strip() for column in columns for value in frame[column])
    return [text for text in texts if text]


def read_domain_file(cfg: AdaptConfig, name: str | None = None, key: str = "adapt.text",
                     fix: str = "or remove adapt.text to pretrain on the training texts") -> list[str]:
    """The texts of ``adapt.text`` (or ``name``, read for ``key``: self-training's ``adapt.unlabelled``), first
    ``adapt.max_rows`` rows; one-line errors naming the key and the fix."""
    name = name or cfg.text
    assert name is not None
    path = Path(name).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {what} ({key}); give the file of unlabelled domain text "
                        f"(relative to {Path.cwd()}), {fix}")
    try:
        # adapt.max_rows: only the head of a large domain file is read (and decompressed)
        records, _ = read_records(path, txt_field=cfg.text_column, split="adapt", max_rows=cfg.max_rows)
    except DataError as exc:
        raise DataError(f"{str(exc).replace('(--data)', f'({key})')} ({key})") from None
    if records and not any(cfg.text_column in values for _, values in records):
        present = sorted({column for _, values in records[:50] for column in values})
        raise DataError(f"{path}: no column '{cfg.text_column}' (adapt.text_column); the file has "
                        f"{', '.join(present[:20]) or 'no columns'}; set adapt.text_column to the text column")
    texts = [_as_text(values.get(cfg.text_column)) for _, values in records]
    if not any(t.strip() for t in texts):
        raise DataError(f"{path}: holds no text ({key}); it needs one document per line (.txt) or a "
                        f"non-empty '{cfg.text_column}' column")
    return texts


def fingerprints(frames: Iterable[pd.DataFrame], clean: CleanConfig) -> set[str]:
    """The leak-check fingerprints of every text of ``frames`` (prepared splits), as data preparation folds them."""
    return {fingerprint(clean_text(t, clean)) for frame in frames for t in frame_texts(frame)}


def filter_texts(texts: list[str], clean: CleanConfig, held_out: set[str]) -> tuple[list[str], dict[str, int]]:
    """Clean each text; drop empty ones, exact repeats, and any whose fingerprint is in ``held_out`` (texts that
    must not leak, see :func:`fingerprints`): "The bill was late!" leaks "the bill was late"."""
    kept: list[str] = []
    seen: set[str] = set()
    counts = {"dropped_empty": 0, "dropped_duplicate": 0, "dropped_leaking": 0}
    for raw in texts:
        text = clean_text(raw, clean)
        if not text.strip():
            counts["dropped_empty"] += 1
        elif fingerprint(text) in held_out:
            counts["dropped_leaking"] += 1
        elif text in seen:
            counts["dropped_duplicate"] += 1
        else:
            seen.add(text)
            kept.append(text)
    return kept, counts


def build_corpus(recipe: Recipe, data: PreparedData) -> Corpus:
    """The leak-free domain corpus, shuffled with ``data.seed`` and split into pretraining and holdout texts."""
    cfg = recipe.adapt
    from_file = read_domain_file(cfg) if cfg.text else []
    from_train = frame_texts(data.train)
    held_out = fingerprints((data.validation, data.test), recipe.data.clean)
    texts, counts = filter_texts([*from_file, *from_train], recipe.data.clean, held_out)
    if not texts:
        source = cfg.text or "the training split"
        raise DataError(f"{source}: no text left to pretrain on after dropping {counts['dropped_leaking']} lines "
                        "matching validation/test texts (adapt.text); add domain text that is not in the test set")
    random.Random(recipe.data.seed).shuffle(texts)
    n_holdout = round(len(texts) * cfg.holdout) if len(texts) > 1 else 0
    n_holdout = max(1, n_holdout) if cfg.holdout > 0 and len(texts) > 1 else n_holdout
    counts |= {"from_file": len(from_file), "from_train": len(from_train)}
    return Corpus(train=texts[n_holdout:], holdout=texts[:n_holdout], counts=counts)
