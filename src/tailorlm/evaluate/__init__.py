"""Metrics and batched inference: measuring before and after tuning the same way (baselines: tasks/<name>/)."""

from tailorlm.evaluate.metrics import classification_metrics, expected_calibration_error, headline

__all__ = ["classification_metrics", "expected_calibration_error", "headline"]
