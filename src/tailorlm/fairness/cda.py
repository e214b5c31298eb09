"""Counterfactual data augmentation (Lu et al. 2018, "Gender bias in neural natural language processing"): every
training row that holds a term of the recipe's counterfactual families gets a copy with the terms swapped and the
same label, so the model sees each label with both sides of every pair and cannot use the term as a shortcut.

Only the training split is augmented, after any reshape (k-fold fold, data-curve subset), so a copy sits on the same
side of every split as its original; a copy whose near-duplicate fingerprint equals a validation or test text is
dropped (it would leak), as is one that repeats a training text. Copies are tagged like ``augment``'s
(``augmented: True``, ``origin``), keep their original's group cells, and are counted in metrics.json
(``fairness.mitigation``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd

from tailorlm.adapt.corpus import fingerprints
from tailorlm.augment.stage import AUGMENTED_COLUMN, ORIGIN_COLUMN, origin_ids
from tailorlm.data.clean import clean_text, fingerprint
from tailorlm.data.pipeline import PreparedData
from tailorlm.fairness.counterfactual import Swapper
from tailorlm.fairness.families import resolve_families
from tailorlm.recipe import Recipe


def counterfactual_augment(recipe: Recipe, data: PreparedData) -> tuple[PreparedData, dict[str, Any]]:
    """``data`` with swapped copies of its training rows appended, and the mitigation record."""
    cfg = recipe.fairness
    families = resolve_families(cfg.counterfactual, cfg.swap_families)
    held_out = fingerprints((data.validation, data.test), recipe.data.clean)
    train = data.train.copy()
    if AUGMENTED_COLUMN not in train:
        train[AUGMENTED_COLUMN] = False
        train[ORIGIN_COLUMN] = origin_ids(train)
    seen = {fingerprint(text) for text in train["text"]}
    copies: list[dict[str, Any]] = []
    dropped = {"leaking": 0, "duplicate": 0}
    by_family = {}
    for family in families:
        swapper, added = Swapper(family["pairs"]), 0
        for record in train.to_dict("records"):
            if record[AUGMENTED_COLUMN] or not swapper.occurs(str(record["text"])):
                continue
            text = clean_text(swapper(str(record["text"])), recipe.data.clean)
            key = fingerprint(text)
            reason = "leaking" if key in held_out else "duplicate" if key in seen else None
            if reason:
                dropped[reason] += 1
                continue
            seen.add(key)
            copies.append({**record, "text": text, AUGMENTED_COLUMN: True})
            added += 1
        by_family[family["name"]] = added
    added_frame = pd.DataFrame(copies, columns=list(train.columns))
    combined = pd.concat([train, added_frame], ignore_index=True) if copies else train.reset_index(drop=True)
    section = {"method": "counterfactual_augment", "reference": "Lu et al. 2018, counterfactual data augmentation",
               "families": [f["name"] for f in families], "rows_added": len(copies), "by_family": by_family,
               "train_rows_before": len(train), "train_rows_after": len(combined),
               "dropped_leaking": dropped["leaking"], "dropped_duplicate": dropped["duplicate"]}
    return dataclasses.replace(data, train=combined, report={**data.report, "counterfactual_augment": section}), section
