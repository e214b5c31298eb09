"""The ``augment`` stage's work: augmented copies of the training rows, never a copy of a validation/test text.

It runs after ``reshape`` (run.py), so a k-fold fold or a data-curve subset is augmented from its own training
side only and a copy always sits on the same side of the split as its original. The method (``augment.method``) is
an ``Augmenter`` (base.py, built by methods.py) that proposes one rewrite per text; everything below is the same for
every method. Each candidate is cleaned like the data (data/clean.py) and dropped, counted, when its near-duplicate
fingerprint equals a validation or test text's (an edit can recreate a held-out text: deleting "not" from a
training review), when it changed nothing, when it repeats a training text or another copy, or when it is empty.
Copies carry ``augmented: True`` and ``origin`` (``source#row`` of the original);
originals ``augmented: False`` and their own id. ``augment.max_share`` caps the copies; rows are visited in a
seeded random order, first copies of every row before second ones, so the cap does not favour the file's head.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from typing import Any

import pandas as pd

from tailorlm.adapt.corpus import fingerprints
from tailorlm.augment.base import Augmenter
from tailorlm.data.clean import clean_text, fingerprint
from tailorlm.data.pipeline import PreparedData
from tailorlm.recipe import Recipe

AUGMENTED_COLUMN = "augmented"
ORIGIN_COLUMN = "origin"


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


def make_copies(train: pd.DataFrame, recipe: Recipe, augmenter: Augmenter, held_out: set[str]) -> Copies:
    """Up to ``copies`` per training row and ``max_share`` in all, leak-free (see the module docstring).

    The augmenter is asked for as many candidates as the cap still allows, so a model-based method never
    generates far past it; its own filters' drops stay on the augmenter."""
    cfg = recipe.augment
    rng = random.Random(seed_of(recipe))
    cap = int(cfg.max_share * len(train))
    seen = {fingerprint(text) for text in train["text"]}
    records, ids = train.to_dict("records"), origin_ids(train)
    order = list(range(len(records)))
    rng.shuffle(order)
    made = Copies()
    for _ in range(cfg.copies):
        start = 0
        while start < len(order) and len(made.rows) < cap:
            chunk = order[start:start + cap - len(made.rows)]
            start += len(chunk)
            texts = augmenter.candidates([records[i]["text"] for i in chunk], rng)
            for i, text in zip(chunk, texts, strict=True):
                if text is not None:
                    keep(made, {**records[i], ORIGIN_COLUMN: ids[i]}, text, recipe, held_out, seen)
    return made


def keep(made: Copies, record: dict[str, Any], text: str, recipe: Recipe, held_out: set[str],
         seen: set[str]) -> None:
    """Add ``text`` as a copy of ``record`` unless it is empty, unchanged, a held-out text or a repeat (counted)."""
    cleaned = clean_text(text, recipe.data.clean)
    key = fingerprint(cleaned)
    if not key:
        made.dropped["empty"] += 1
    elif key == fingerprint(record["text"]):
        made.dropped["unchanged"] += 1
    elif key in held_out:
        made.dropped["leaking"] += 1
    elif key in seen:
        made.dropped["duplicate"] += 1
    else:
        seen.add(key)
        made.rows.append({**record, "text": cleaned, AUGMENTED_COLUMN: True})


def augment_data(recipe: Recipe, data: PreparedData, augmenter: Augmenter) -> tuple[PreparedData, dict[str, Any]]:
    """``data`` with ``augmenter``'s copies appended to the training rows (validation and test untouched), and
    the metrics section: the method, its models and settings, and how many candidates each filter dropped."""
    cfg = recipe.augment
    held_out = fingerprints((data.validation, data.test), recipe.data.clean)
    train = data.train.copy()
    made = make_copies(train, recipe, augmenter, held_out)
    train[AUGMENTED_COLUMN] = False
    train[ORIGIN_COLUMN] = origin_ids(train)
    added = pd.DataFrame(made.rows, columns=list(train.columns))
    combined = pd.concat([train, added], ignore_index=True) if len(added) else train.reset_index(drop=True)
    section = {
        "method": cfg.method, "rows_added": len(made.rows), "train_rows_before": len(train),
        "train_rows_after": len(combined), "dropped_leaking": made.dropped["leaking"],
        "dropped_unchanged": made.dropped["unchanged"], "dropped_duplicate": made.dropped["duplicate"],
        "dropped_empty": made.dropped["empty"], "operations": dict(sorted(augmenter.operations.items())),
        "alpha": cfg.alpha, "copies": cfg.copies, "max_share": cfg.max_share, "seed": seed_of(recipe),
        **augmenter.record(),
    }
    report = {**data.report, "augment": section}  # the data report says what was added to the training rows
    return dataclasses.replace(data, train=combined, report=report), section


def augmented_jsonl(train: pd.DataFrame) -> str:
    """augmented.jsonl: each copy's text, label and origin, so a user (and a test) can check what was added."""
    copies = train[train[AUGMENTED_COLUMN].astype(bool)]
    return "".join(json.dumps({"text": text, "label": label, ORIGIN_COLUMN: origin}, ensure_ascii=False) + "\n"
                   for text, label, origin in zip(copies["text"], copies["label"], copies[ORIGIN_COLUMN],
                                                  strict=True))
