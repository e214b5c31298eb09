"""Which baselines are floors and which are references a user would actually consider.

A *floor* is a lower bound, not an alternative anyone would ship: a randomly initialised head, a majority tag, a
seq2seq model whose cross-attention was never trained. It is reported, named as a floor, but the headline gain,
the verdict and the paired significance test are measured against the best *reference* baseline.

``metrics.json`` records the decision on every baseline as ``baseline.<key>.floor`` (``mark_floors``), so that a
reader of the file, the report, ``tailor compare`` and the model card all see the same split. A task that knows
better for one run sets ``floor`` itself (translation's ``pretrained`` is a floor only for the warm-started
minilm-seq2seq; QA's ``sentence_retrieval`` only on SQuAD v2 data, whose unanswerable questions it always gets
wrong); the name rules below fill in the rest, and decide for files written before the marker existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tailorlm.tasks import TASK_SPECS

#: Baseline keys (metrics.json ``baseline.<key>``) that are floors, whatever the task.
FLOOR_BASELINES: frozenset[str] = frozenset({
    "pretrained_head",     # qa: a randomly initialised span head on the pretrained body
    "sentence_retrieval",  # qa, SQuAD v2: never "no answer" (the task marks it a reference on v1 data)
    "majority_tag",        # token-classification: every word gets its most frequent training tag
})
#: Keys that are floors only for some tasks are the task's ``TaskSpec.floor_baselines`` (translation's
#: "pretrained": its task marks its own run, ``floor`` false for a real pretrained seq2seq model; the spec decides
#: for metrics.json files without the marker).


def is_floor(name: str, task: str | None = None, entry: Any = None) -> bool:
    """Whether baseline ``name`` is a floor (reported, never the bar a tuned model is measured against).

    ``entry`` is the baseline's metrics.json dict; its ``floor`` marker, when present, wins over the name rules."""
    if isinstance(entry, Mapping) and isinstance(entry.get("floor"), bool):
        return bool(entry["floor"])
    return name in FLOOR_BASELINES or (task in TASK_SPECS and name in TASK_SPECS[task].floor_baselines)


def reference_names(names: Iterable[str], task: str | None = None,
                    baselines: Mapping[str, Any] | None = None) -> list[str]:
    """The baselines a careful user would consider, in the given order (floors left out)."""
    baselines = baselines or {}
    return [name for name in names if not is_floor(name, task, baselines.get(name))]


def floor_names(baselines: Mapping[str, Any], task: str | None = None) -> list[str]:
    """The floors among ``baselines`` (metrics.json ``baseline``), in their order."""
    return [name for name, entry in baselines.items() if is_floor(name, task, entry)]


def mark_floors(baselines: Mapping[str, Any], task: str | None = None) -> None:
    """Record ``floor: true/false`` on every measured baseline dict (a marker the task set is kept)."""
    for name, entry in baselines.items():
        if isinstance(entry, dict) and "skipped" not in entry:
            entry["floor"] = is_floor(name, task, entry)
