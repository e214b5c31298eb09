"""The representation report: who is in the data, with which labels, before any model is trained.

For each split and each grouping (a group column, or the intersection of several): every group's rows and share of
the split, and each label's share within the group; for each counterfactual family, the share of each label's
texts that hold one of its terms. A planted correlation (one group mostly one label, "she" mostly in complaints)
shows here before training can learn it as a shortcut.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from tailorlm.fairness.counterfactual import Swapper


def group_table(groups: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Group -> rows, share of the split, and each label's share within the group."""
    n = len(groups)
    by_group = Counter(groups)
    cells = Counter(zip(groups, labels, strict=True))
    names = sorted({str(label) for label in labels})
    return {g: {"rows": k, "share": k / n if n else None,
                "labels": {label: cells[(g, label)] / k for label in names}}
            for g, k in sorted(by_group.items(), key=lambda item: (-item[1], str(item[0])))}


def term_frequency(texts: Sequence[str], labels: Sequence[str], families: list[dict[str, Any]],
                   ) -> dict[str, dict[str, Any]]:
    """Family -> per label: texts holding one of its terms, and their share of the label's texts."""
    per_label = Counter(labels)
    result = {}
    for family in families:
        swapper = Swapper(family["pairs"])
        holding = Counter(label for text, label in zip(texts, labels, strict=True) if swapper.occurs(str(text)))
        result[family["name"]] = {label: {"rows": holding[label], "share": holding[label] / per_label[label]}
                                  for label in sorted(per_label)}
    return result


def representation(splits: dict[str, tuple[list[str], list[str], dict[str, list[str]]]],
                   families: list[dict[str, Any]]) -> dict[str, Any]:
    """``splits``: name -> (texts, labels, grouping name -> each row's group)."""
    result: dict[str, Any] = {"splits": {}}
    for name, (texts, labels, groupings) in splits.items():
        result["splits"][name] = {"rows": len(texts),
                                  "groups": {g: group_table(values, labels) for g, values in groupings.items()},
                                  "terms": term_frequency(texts, labels, families)}
    return result
