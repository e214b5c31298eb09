"""Classification metrics: the numbers a report compares before and after tuning.

One function computes everything from labels, predictions and probabilities, so the baselines and the tuned
model are measured by exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE: how far the top-class confidence is from the accuracy, averaged over confidence bins."""
    if len(y_true) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def _averaged(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int, average: str) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(n_labels)), average=average, zero_division=0
    )
    return {f"precision_{average}": float(precision), f"recall_{average}": float(recall), f"f1_{average}": float(f1)}


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[str],
    probs: np.ndarray | None = None,
) -> dict:
    """Accuracy; macro, micro and weighted P/R/F1; per-class table; confusion matrix; ECE when probs are given.

    ``y_true``/``y_pred`` are label indices into ``labels``. Macro averages include every label in ``labels``
    (a class the model never predicts counts as 0), which is what a domain expert expects.
    """
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    n_labels = len(labels)
    result: dict = {"n": len(y_true), "accuracy": float(accuracy_score(y_true, y_pred)) if len(y_true) else 0.0}
    for average in ("macro", "micro", "weighted"):
        result.update(_averaged(y_true, y_pred, n_labels, average))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(n_labels)), average=None, zero_division=0
    )
    result["per_class"] = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    result["confusion_matrix"] = confusion_matrix(y_true, y_pred, labels=list(range(n_labels))).tolist()
    if probs is not None:
        result["ece"] = expected_calibration_error(np.asarray(probs), y_true)
    return result


def headline(metrics: dict) -> dict[str, float]:
    """The scalar metrics only (for tables, logs and the validation metric)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)
