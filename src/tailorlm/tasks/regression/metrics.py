"""Regression metrics: RMSE, MAE, Pearson and Spearman correlation, and per-example errors for the bootstrap."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr


def _correlation(fn: object, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """A correlation; 0.0 when either side is constant (no ranking to agree with)."""
    if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return 0.0
    value = float(fn(y_true, y_pred)[0])  # type: ignore[operator]
    return value if np.isfinite(value) else 0.0


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """rmse and mae (lower is better), pearson and spearman (higher is better), n."""
    y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    errors = y_pred - y_true
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))) if len(errors) else 0.0,
        "mae": float(np.mean(np.abs(errors))) if len(errors) else 0.0,
        "pearson": _correlation(pearsonr, y_true, y_pred),
        "spearman": _correlation(spearmanr, y_true, y_pred),
        "n": len(errors),
    }


def per_example_errors(y_true: np.ndarray, y_pred: np.ndarray) -> list[dict[str, object]]:
    """One ``scores`` dict per example: the squared error, whose mean the paired bootstrap compares (MSE)."""
    return [{"prediction": round(float(p), 6),
             "scores": {"squared_error": float((p - t) ** 2), "absolute_error": float(abs(p - t))}}
            for t, p in zip(np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64), strict=True)]
