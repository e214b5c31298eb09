"""Measures of domain shift shared by the adaptation methods and the shift report.

``proxy_a_distance`` (Ben-David et al. 2007; Ganin et al. 2016): train a domain classifier to tell source from
target features; with held-out error ``e`` the proxy A-distance is ``2 (1 - 2e)``: 0 when the domains cannot be
told apart, 2 when they always can. The classifier is scikit-learn's logistic regression, scored by stratified
5-fold cross-validation so every row is held out once.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def domain_accuracy(source: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy of a logistic-regression domain classifier on the two feature sets (5-fold CV)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    features = np.concatenate([source, target])
    domain = np.concatenate([np.zeros(len(source), dtype=int), np.ones(len(target), dtype=int)])
    folds = StratifiedKFold(n_splits=min(5, len(source), len(target)), shuffle=True, random_state=seed)
    scores = cross_val_score(LogisticRegression(max_iter=2000), features, domain, cv=folds, scoring="accuracy")
    return float(scores.mean())


def proxy_a_distance(source: np.ndarray, target: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """``{"domain_accuracy", "proxy_a_distance"}`` of two feature sets (rows: examples)."""
    accuracy = domain_accuracy(source, target, seed)
    error = 1.0 - accuracy
    return {"domain_accuracy": round(accuracy, 6), "proxy_a_distance": round(2.0 * (1.0 - 2.0 * error), 6)}
