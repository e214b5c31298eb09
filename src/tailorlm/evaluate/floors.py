"""Which baselines are floors and which are references a user would actually consider.

A *floor* is a lower bound, not an alternative anyone would ship: a randomly initialised head, a majority tag, a
seq2seq model whose cross-attention was never trained. It is reported, named as a floor, but the headline gain,
the verdict and the paired significance test are measured against the best *reference* baseline.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Baseline keys (metrics.json ``baseline.<key>``) that are floors, whatever the task.
FLOOR_BASELINES: frozenset[str] = frozenset({
    "pretrained_head",     # qa: a randomly initialised span head on the pretrained body
    "sentence_retrieval",  # qa: the passage sentence sharing most words with the question (never "no answer")
    "majority_tag",        # token-classification: every word gets its most frequent training tag
})
#: Keys that are floors only for some tasks: (task, key).
TASK_FLOORS: frozenset[tuple[str, str]] = frozenset({
    ("translation", "pretrained"),  # minilm-seq2seq before tuning: random cross-attention
})


def is_floor(name: str, task: str | None = None) -> bool:
    """Whether baseline ``name`` is a floor (reported, never the bar a tuned model is measured against)."""
    return name in FLOOR_BASELINES or (task is not None and (task, name) in TASK_FLOORS)


def reference_names(names: Iterable[str], task: str | None = None) -> list[str]:
    """The baselines a careful user would consider, in the given order (floors left out)."""
    return [name for name in names if not is_floor(name, task)]
