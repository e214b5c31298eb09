"""The ``augment`` stage's work: augmented copies of the training rows, never a copy of a validation/test text.

It runs after ``reshape`` (run.py), so a k-fold fold or a data-curve subset is augmented from its own training
side only and a copy always sits on the same side of the split as its original. Each copy is cleaned like the
data (data/clean.py) and dropped, counted, when its near-duplicate fingerprint equals a validation or test text's
(an edit can recreate a held-out text: deleting "not" from a training review), when the edit changed nothing, or
when it repeats a training text. Copies carry ``augmented: True`` and ``origin`` (``source#row`` of the original);
originals ``augmented: False`` and their own id. ``augment.max_share`` caps the copies; rows are visited in a
seeded random order, first copies of every row before second ones, so the cap does not favour the file's head.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from tailorlm.adapt.corpus import fingerprints
from tailorlm.augment.eda import Synonyms, eda_copy
from tailorlm.data.clean import clean_text, fingerprint
from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import DataError
from tailorlm.recipe import Recipe

AUGMENTED_COLUMN = "augmented"
ORIGIN_COLUMN = "origin"


def read_synonyms(name: str) -> Synonyms:
    """``augment.synonyms``: csv/tsv of word,synonym pairs, used both ways; one-line errors naming the key."""
    path = Path(name).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "file not found"
        raise DataError(f"{path}: {what} (augment.synonyms); give a csv/tsv of word,synonym pairs (relative to "
                        f"{Path.cwd()}) or remove augment.synonyms to use only swap and deletion")
    delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            pairs = [[cell.strip() for cell in cells[:2]] for cells in csv.reader(handle, delimiter=delimiter)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable UTF-8 csv/tsv (augment.synonyms): {exc}") from None
    synonyms: dict[str, set[str]] = {}
    for pair in pairs:
        if len(pair) < 2 or not all(pair) or [p.lower() for p in pair] == ["word", "synonym"]:
            continue
        synonyms.setdefault(pair[0].lower(), set()).add(pair[1])
        synonyms.setdefault(pair[1].lower(), set()).add(pair[0])
    if not synonyms:
        raise DataError(f"{path}: no word,synonym pairs (augment.synonyms); give two columns, one pair a line")
    return {word: sorted(found) for word, found in synonyms.items()}


def origin_ids(frame: pd.DataFrame) -> list[str]:
    """Each row's stable id, ``source#row``: the same id k-fold's folds.json gives rows of several files."""
    return [f"{source}#{int(row)}" for source, row in zip(frame["source"], frame["row"], strict=True)]


def seed_of(recipe: Recipe) -> int:
    return recipe.augment.seed if recipe.augment.seed is not None else recipe.training.seed


@dataclasses.dataclass
class Copies:
    """The copies made so far and why others were dropped."""

    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dropped: Counter[str] = dataclasses.field(default_factory=Counter)
    operations: Counter[str] = dataclasses.field(default_factory=Counter)


def make_copies(train: pd.DataFrame, recipe: Recipe, synonyms: Synonyms, held_out: set[str]) -> Copies:
    """Up to ``copies`` per training row and ``max_share`` in all, leak-free (see the module docstring)."""
    cfg, clean = recipe.augment, recipe.data.clean
    rng = random.Random(seed_of(recipe))
    cap = int(cfg.max_share * len(train))
    seen = {fingerprint(text) for text in train["text"]}
    records, ids = train.to_dict("records"), origin_ids(train)
    order = list(range(len(records)))
    rng.shuffle(order)
    made = Copies()
    for _ in range(cfg.copies):
        for i in order:
            if len(made.rows) >= cap:
                return made
            text, operation = eda_copy(records[i]["text"], cfg.alpha, synonyms, rng)
            key = fingerprint(clean_text(text, clean))
            reason = ("leaking" if key in held_out else "duplicate" if key in seen else None)
            if reason:
                made.dropped["unchanged" if key == fingerprint(records[i]["text"]) else reason] += 1
                continue
            seen.add(key)
            made.operations[operation] += 1
            made.rows.append({**records[i], "text": clean_text(text, clean), AUGMENTED_COLUMN: True,
                              ORIGIN_COLUMN: ids[i]})
    return made


def augment_data(recipe: Recipe, data: PreparedData) -> tuple[PreparedData, dict[str, Any]]:
    """``data`` with augmented training rows appended (validation and test untouched), and the metrics section."""
    cfg = recipe.augment
    synonyms = read_synonyms(cfg.synonyms) if cfg.synonyms else {}
    held_out = fingerprints((data.validation, data.test), recipe.data.clean)
    train = data.train.copy()
    made = make_copies(train, recipe, synonyms, held_out)
    train[AUGMENTED_COLUMN] = False
    train[ORIGIN_COLUMN] = origin_ids(train)
    added = pd.DataFrame(made.rows, columns=list(train.columns))
    combined = pd.concat([train, added], ignore_index=True) if len(added) else train.reset_index(drop=True)
    section = {
        "method": cfg.method, "rows_added": len(made.rows), "train_rows_before": len(train),
        "train_rows_after": len(combined), "dropped_leaking": made.dropped["leaking"],
        "dropped_unchanged": made.dropped["unchanged"], "dropped_duplicate": made.dropped["duplicate"],
        "operations": dict(sorted(made.operations.items())), "synonym_words": len(synonyms),
        "alpha": cfg.alpha, "copies": cfg.copies, "max_share": cfg.max_share, "seed": seed_of(recipe),
    }
    report = {**data.report, "augment": section}  # the data report says what was added to the training rows
    return dataclasses.replace(data, train=combined, report=report), section


def augmented_jsonl(train: pd.DataFrame) -> str:
    """augmented.jsonl: each copy's text, label and origin, so a user (and a test) can check what was added."""
    copies = train[train[AUGMENTED_COLUMN].astype(bool)]
    return "".join(json.dumps({"text": text, "label": label, ORIGIN_COLUMN: origin}, ensure_ascii=False) + "\n"
                   for text, label, origin in zip(copies["text"], copies["label"], copies[ORIGIN_COLUMN],
                                                  strict=True))
