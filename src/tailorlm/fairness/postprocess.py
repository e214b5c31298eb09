"""Post-processing for fairness: fairlearn's ``ThresholdOptimizer`` (Hardt et al. 2016) on the tuned model's
scores, for a binary classifier whose group is known at prediction time.

Fitted on the validation split (the model's probability of the second label and each row's group), applied to the
test split, and scored beside the unmitigated model on the same test rows: accuracy, macro-F1, the demographic-
parity and equalized-odds differences, and what the mitigation cost in accuracy. Test rows of a group the
validation split never saw keep the model's own prediction.

The fitted rule is saved with the model (``tailor_model.json`` → ``postprocess``: per group, fairlearn's two
thresholds and their mixing weights) and ``tailor predict``/``serve`` apply it to an input **only when it gives its
group** (a ``group`` field); without one the model's own label stands. fairlearn draws each decision at random from
the rule; a served model must answer the same input the same way, so here (and in the report, so both agree) the
label is the positive one when the rule's probability of it is at least 0.5 (``decide``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator


class _Scores(BaseEstimator):
    """A "fitted estimator" whose prediction is its single input column: the model's score, computed already."""

    def __init__(self) -> None:
        self.fitted_ = True

    def fit(self, x: Any, y: Any = None) -> _Scores:
        return self

    def predict(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=float)[:, 0]


def _scores(y: np.ndarray, predicted: np.ndarray, groups: np.ndarray) -> dict[str, Any]:
    from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
    from sklearn.metrics import accuracy_score, f1_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"accuracy": float(accuracy_score(y, predicted)),
                "f1_macro": float(f1_score(y, predicted, average="macro", zero_division=0)),
                "demographic_parity_difference": float(demographic_parity_difference(
                    y, predicted, sensitive_features=groups)),
                "equalized_odds_difference": float(equalized_odds_difference(y, predicted, sensitive_features=groups))}


def threshold_optimizer(constraint: str, validation: tuple[np.ndarray, Sequence[str], Sequence[str]],
                        test: tuple[np.ndarray, Sequence[str], Sequence[str]], labels: Sequence[str],
                        seed: int = 0) -> dict[str, Any]:
    """``validation``/``test``: (p(second label), gold labels, groups). The comparison for metrics.json."""
    from fairlearn.postprocessing import ThresholdOptimizer

    if len(labels) != 2:
        return {"method": "ThresholdOptimizer", "skipped": f"needs two labels, the model has {len(labels)}"}
    positive = labels[1]
    p_val, y_val, g_val = np.asarray(validation[0]), np.asarray(validation[1]) == positive, np.asarray(validation[2])
    p_test, y_test, g_test = np.asarray(test[0]), np.asarray(test[1]) == positive, np.asarray(test[2])
    one_sided = sorted(str(g) for g in np.unique(g_val) if len(np.unique(y_val[g_val == g])) < 2)
    if len(set(g_val)) < 2 or one_sided:
        return {"method": "ThresholdOptimizer", "skipped": "the validation split needs two groups, each with both "
                f"labels{' (only one label in: ' + ', '.join(one_sided) + ')' if one_sided else ''}"}
    optimizer = ThresholdOptimizer(estimator=_Scores(), constraints=constraint, prefit=True, predict_method="predict")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimizer.fit(p_val[:, None], y_val.astype(int), sensitive_features=g_val)
        rules = rules_of(optimizer)
    seen = np.isin(g_test, list(rules))
    adjusted = np.array([decide(rules, float(p), str(g)) for p, g in zip(p_test, g_test, strict=True)], dtype=int)
    before = _scores(y_test.astype(int), (p_test >= 0.5).astype(int), g_test)
    after = _scores(y_test.astype(int), adjusted, g_test)
    return {"method": "ThresholdOptimizer", "reference": "fairlearn ThresholdOptimizer (Hardt et al. 2016)",
            "constraint": constraint, "fitted_on": "validation", "validation_rows": len(p_val),
            "test_rows": len(p_test), "unseen_group_rows": int((~seen).sum()), "positive_label": positive,
            "unmitigated": before, "mitigated": after,
            "accuracy_cost": before["accuracy"] - after["accuracy"],
            "f1_macro_cost": before["f1_macro"] - after["f1_macro"],
            "applied_at_predict": True, "rules": rules,
            "decision": "positive when the rule's probability of the positive label is at least 0.5 (deterministic; "
                        "fairlearn samples), for inputs that give their group"}


def rules_of(optimizer: Any) -> dict[str, dict[str, Any]]:
    """Per group, fairlearn's rule: with weight p0 the first threshold operation, with p1 the second."""
    rules = {}
    for group, rule in optimizer.interpolated_thresholder_.interpolation_dict.items():
        rules[str(group)] = {key: float(rule[key]) for key in ("p0", "p1")} | {
            f"op{i}": [str(rule[f"operation{i}"].operator), float(rule[f"operation{i}"].threshold)] for i in (0, 1)}
    return rules


def positive_probability(rule: dict[str, Any], score: float) -> float:
    """The rule's probability of the positive label for a model score (fairlearn's ``_pmf_predict``)."""
    def holds(op: list[Any]) -> bool:
        return score > op[1] if op[0] == ">" else score < op[1]

    return rule["p0"] * holds(rule["op0"]) + rule["p1"] * holds(rule["op1"])


def decide(rules: dict[str, dict[str, Any]], score: float, group: str) -> int:
    """1 (positive) or 0: the group's rule, or the model's own 0.5 cut for a group the rules do not know."""
    rule = rules.get(group)
    return int(score >= 0.5) if rule is None else int(positive_probability(rule, score) >= 0.5)
