"""Reweighing (Kamiran & Calders 2012): train as if group and label were independent.

When one group's texts are mostly of one label in the training data, a model can learn the group's wording as a
shortcut to the label. Reweighing gives every training row of the cell (group g, label y) the weight

    w(g, y) = P(g) * P(y) / P(g, y) = n_g * n_y / (n * n_gy)

so each cell carries, in the loss, the total weight it would have if group and label were independent: cells
rarer than independence predicts count more, over-represented cells less. When every (group, label) cell has
rows the weights average to 1, so the loss keeps its scale. The trainer applies them generically: a ``weight``
column in the encoded training set makes the loss the weighted mean of per-example losses (train/resume.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


def reweighing(groups: Sequence[str], labels: Sequence[str]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Per-row weights and the table of cells (group, label, rows, expected rows, weight) they come from."""
    if len(groups) != len(labels):
        raise ValueError(f"{len(groups)} groups but {len(labels)} labels")
    n = len(labels)
    if n == 0:
        return np.zeros(0), []
    by_group, by_label = Counter(groups), Counter(labels)
    cells = Counter(zip(groups, labels, strict=True))
    weight = {cell: by_group[cell[0]] * by_label[cell[1]] / (n * count) for cell, count in cells.items()}
    table = [
        {"group": g, "label": y, "rows": count, "expected_rows": round(by_group[g] * by_label[y] / n, 4),
         "weight": weight[(g, y)]}
        for (g, y), count in sorted(cells.items(), key=lambda item: (str(item[0][0]), str(item[0][1])))
    ]
    return np.array([weight[cell] for cell in zip(groups, labels, strict=True)], dtype=np.float64), table
