"""Metrics and batched inference: measuring before and after tuning the same way (baselines: tasks/<name>/).

The names below are loaded on first use (PEP 562): importing a light submodule such as ``evaluate.floors``
(``tailor runs`` does, for metrics.json files without floor markers) must not pull in numpy and scikit-learn.
"""

from __future__ import annotations

from typing import Any

__all__ = ["classification_metrics", "expected_calibration_error", "headline"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tailorlm.evaluate import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module 'tailorlm.evaluate' has no attribute {name!r}")
