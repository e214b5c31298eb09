"""The target domain's unlabelled text (``adapt.target_unlabeled``) for source -> target adaptation.

Read before any training, so that a bad file fails in seconds; cleaned like the labelled data; texts whose
near-duplicate fingerprint matches any train, validation or test text are dropped and counted (a test text seen
as "target" during training would make the test score prove nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

from tailorlm.adapt.corpus import filter_texts, fingerprints, read_domain_file
from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import DataError
from tailorlm.recipe import Recipe


@dataclass
class TargetTexts:
    """The cleaned, leak-free target texts and what reading them dropped."""

    source: str
    texts: list[str]
    counts: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "rows": len(self.texts), **self.counts}


def read_target(recipe: Recipe, data: PreparedData) -> TargetTexts:
    """``adapt.target_unlabeled``: one-line errors naming the key and the fix."""
    source = recipe.adapt.target_unlabeled
    assert source is not None  # the recipe refuses a target method without it
    raw = read_domain_file(recipe.adapt, source, "adapt.target_unlabeled",
                           fix="or set adapt.adversarial and adapt.instance_weighting to false")
    held_out = fingerprints((data.train, data.validation, data.test), recipe.data.clean)
    texts, counts = filter_texts(raw, recipe.data.clean, held_out)
    if not texts:
        raise DataError(f"{source}: no target text left after dropping {counts['dropped_leaking']} texts matching "
                        "train/validation/test texts (adapt.target_unlabeled); give unlabelled target-domain text")
    return TargetTexts(source=str(source), texts=texts, counts={"read": len(raw), **counts})
