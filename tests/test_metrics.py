"""Metrics and baselines: checked against hand-computed values, not against themselves."""

from __future__ import annotations

import numpy as np
import pytest

from tailorlm.evaluate.metrics import classification_metrics, expected_calibration_error
from tailorlm.tasks.classification.baselines import label_prompt, linear_probe, zero_shot


def test_classification_metrics_match_hand_computation() -> None:
    labels = ["a", "b", "c"]
    y_true = [0, 0, 1, 1, 2, 2]
    y_pred = [0, 1, 1, 1, 0, 0]  # class c never predicted
    m = classification_metrics(y_true, y_pred, labels)
    assert m["accuracy"] == pytest.approx(3 / 6)
    # a: P=1/3 R=1/2 ; b: P=2/3 R=1 ; c: P=0 R=0
    assert m["per_class"]["a"]["precision"] == pytest.approx(1 / 3)
    assert m["per_class"]["b"]["recall"] == pytest.approx(1.0)
    assert m["per_class"]["c"]["f1"] == 0.0
    f1_a = 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2)
    f1_b = 2 * (2 / 3) / (2 / 3 + 1)
    assert m["f1_macro"] == pytest.approx((f1_a + f1_b + 0) / 3)
    assert m["f1_micro"] == pytest.approx(0.5)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [2, 0, 0]]
    assert m["n"] == 6


def test_ece_zero_when_confidence_equals_accuracy_and_positive_otherwise() -> None:
    probs = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


def test_zero_shot_picks_nearest_label_description() -> None:
    labels = ["x", "y"]
    label_emb = np.array([[1.0, 0.0], [0.0, 1.0]])
    text_emb = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    m = zero_shot(text_emb, label_emb, np.array([0, 1, 1]), labels)
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert label_prompt("billing_dispute", {}) == "billing dispute"
    assert label_prompt("a", {"a": "about A"}) == "about A"


def test_linear_probe_learns_a_separable_problem() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8))
    y = (x[:, 0] > 0).astype(int)
    m = linear_probe(x[:80], y[:80], x[80:], y[80:], ["neg", "pos"])
    assert m["accuracy"] > 0.9
    assert "logistic regression" in m["method"]
