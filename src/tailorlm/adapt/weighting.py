"""adapt.instance_weighting: weigh each source training row by how target-like it is (covariate-shift correction).

A probabilistic domain classifier (logistic regression on the pretrained model's frozen mean-pooled features)
tells source rows from target texts. Each source row's ``p = p(target | x)`` is out-of-fold (cross_val_predict),
so a row is never scored by a classifier that saw it; the density ratio ``p / (1 - p) * n_source / n_target``
estimates ``p_target(x) / p_source(x)`` (Bickel et al. 2007; Shimodaira 2000). The ratio is normalised to mean 1,
so the loss keeps its scale and the learning rate keeps its meaning, and truncated so that no row weighs more than
``adapt.weight_clip`` times the average row (a few rows must not carry the whole loss; Ionides 2008). The weights
multiply any ``weight`` column already there (fairness reweighing), so both corrections hold; the report shows the
histogram, the effective sample size and the most and least target-like source rows, so a user sees whether the
weighting did anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tailorlm.errors import DataError

#: how far from 0 and 1 a domain probability may go before the ratio is taken (no division by zero)
PROBABILITY_FLOOR = 1e-6
#: source rows shown at each end of the weight ranking
SHOWN_ROWS = 5
HISTOGRAM_BINS = 10
#: a domain classifier this accurate means the two domains barely share support, where density-ratio weights
#: cannot make the source look like the target (blog -> book reviews, 0.992: weighting lost 3-4 macro-F1 points to
#: source-only at every clip tried; docs/adaptation.md)
SEPARABLE_DOMAINS = 0.95


def require_rows(n_source: int, n_target: int) -> None:
    """Cross-validation needs two rows of each domain; checked before any text is embedded."""
    if n_source < 2 or n_target < 2:
        raise DataError(f"adapt.instance_weighting needs at least 2 source and 2 target texts (got {n_source} "
                        f"and {n_target}); give more adapt.target_unlabeled text or set it to false")


def domain_probabilities(source: np.ndarray, target: np.ndarray, seed: int = 0) -> np.ndarray:
    """Out-of-fold ``p(target | x)`` of each source row from a cross-validated logistic-regression classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    require_rows(len(source), len(target))
    features = np.concatenate([source, target])
    domain = np.concatenate([np.zeros(len(source), dtype=int), np.ones(len(target), dtype=int)])
    folds = StratifiedKFold(n_splits=min(5, len(source), len(target)), shuffle=True, random_state=seed)
    probabilities = cross_val_predict(LogisticRegression(max_iter=2000), features, domain, cv=folds,
                                      method="predict_proba")
    return probabilities[: len(source), 1]


def density_ratio(p_target: np.ndarray, n_source: int, n_target: int) -> np.ndarray:
    """``p/(1-p) * n_source/n_target``: the classifier's odds corrected for the two sides' sizes."""
    p = np.clip(np.asarray(p_target, dtype=np.float64), PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return p / (1.0 - p) * (n_source / n_target)


def density_ratio_weights(p_target: np.ndarray, n_source: int, n_target: int, clip: float) -> np.ndarray:
    """The density ratio normalised to mean 1 with no weight above ``clip`` (truncated importance weights).

    The cap applies to the *normalised* weights, so ``clip`` bounds what one row carries relative to the average
    row. Clipping the raw ratio first, as this code once did, let a few rows reach twice the clip after
    normalisation (weights up to 20 at clip 10 on blog -> book reviews, effective sample 17%)."""
    ratio = density_ratio(p_target, n_source, n_target)
    return ratio_capped_at_mean_multiple(ratio, clip)


def ratio_capped_at_mean_multiple(ratio: np.ndarray, clip: float) -> np.ndarray:
    """``min(ratio, t) / mean(min(ratio, t))`` with the threshold ``t`` chosen so the largest weight is ``clip``.

    Solved exactly on the sorted ratios: with the ``k`` largest rows at ``t`` and the rest unchanged, the
    normalised cap is ``clip`` when ``t = clip * rest_sum / (n - clip * k)``; the smallest ``k`` whose ``t`` lies
    at or below the k-th largest ratio (and above the next) is the answer. No cap is needed when the ratio's own
    largest-to-mean ratio is already at most ``clip``."""
    ratio = np.asarray(ratio, dtype=np.float64)
    n = len(ratio)
    if ratio.max() <= clip * ratio.mean():
        return ratio / ratio.mean()
    descending = np.sort(ratio)[::-1]
    rest_sums = descending.sum() - np.cumsum(descending)  # sum of the rows below the k largest, k = 1..n
    for k in range(1, n):
        if n - clip * k <= 0:
            break
        threshold = clip * rest_sums[k - 1] / (n - clip * k)
        if descending[k] <= threshold <= descending[k - 1]:
            capped = np.minimum(ratio, threshold)
            return capped / capped.mean()
    return np.ones(n)  # clip * k >= n for every feasible k: only equal weights satisfy the cap


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's ``(sum w)^2 / sum w^2``: how many equally weighted rows the weighted rows are worth."""
    return float(weights.sum() ** 2 / np.square(weights).sum())


def _ranked(texts: list[str], weights: np.ndarray, order: np.ndarray) -> list[dict[str, Any]]:
    return [{"text": texts[i], "weight": round(float(weights[i]), 6)} for i in order[:SHOWN_ROWS]]


def overlap_caution(domain_accuracy: float) -> str | None:
    """A sentence for metrics.json and the terminal when the domains are too far apart for weighting to work."""
    if domain_accuracy < SEPARABLE_DOMAINS:
        return None
    return (f"the domain classifier tells source from target with accuracy {domain_accuracy:.3f}: the domains "
            "barely overlap, so no reweighting of source rows makes them look like the target; compare against "
            "source-only (tailor adapt-study) before keeping instance weighting")


def weight_report(texts: list[str], weights: np.ndarray, clip: float, clipped_rows: int) -> dict[str, Any]:
    """The weights as metrics.json shows them: ESS, histogram, the rows at both ends of the ranking."""
    ess = effective_sample_size(weights)
    counts, edges = np.histogram(weights, bins=HISTOGRAM_BINS)
    order = np.argsort(-weights, kind="stable")
    return {
        "method": "density ratio of a cross-validated logistic-regression domain classifier on frozen features",
        "rows": len(weights),
        "effective_sample_size": round(ess, 3),
        "ess_share": round(ess / len(weights), 6),
        "clip": clip,
        "clipped_rows": clipped_rows,
        "min": round(float(weights.min()), 6),
        "max": round(float(weights.max()), 6),
        "histogram": {"bins": [round(float(e), 6) for e in edges], "counts": [int(c) for c in counts]},
        "most_target_like": _ranked(texts, weights, order),
        "least_target_like": _ranked(texts, weights, order[::-1]),
    }


def apply_weights(encoded: Any, weights: np.ndarray) -> None:
    """Multiply ``weights`` into ``encoded.train``'s weight column (fairness reweighing), or add the column."""
    from tailorlm.train.objective import WEIGHT_COLUMN

    train = encoded.train
    if len(weights) != len(train):
        raise RuntimeError(f"{len(weights)} instance weights for {len(train)} encoded training rows")
    combined = np.asarray(weights, dtype=np.float64)
    if WEIGHT_COLUMN in train.column_names:
        combined = combined * np.asarray(train[WEIGHT_COLUMN], dtype=np.float64)
        train = train.remove_columns(WEIGHT_COLUMN)
    encoded.train = train.add_column(WEIGHT_COLUMN, combined.tolist())


def frozen_features(recipe: Any, resolved: Any, tokenizer: Any, texts_by_side: list[list[str]],
                    max_length: int) -> list[np.ndarray]:
    """Mean-pooled features of the pretrained model as named (never the fine-tuned one) for each list of texts."""
    from transformers import AutoModel

    from tailorlm.evaluate.inference import forward_sorted, mean_pooled
    from tailorlm.models.loading import load_pretrained

    encoder = load_pretrained(AutoModel, resolved, recipe.model)
    batch_size = recipe.training.eval_batch
    return [forward_sorted(encoder, tokenizer, texts, max_length, batch_size, mean_pooled).astype(np.float64)
            for texts in texts_by_side]


def instance_weighting(recipe: Any, data: Any, target_texts: list[str], resolved: Any, tokenizer: Any,
                       encoded: Any) -> dict[str, Any]:
    """Weigh ``encoded.train`` by target-likeness; returns metrics.json's ``adapt.instance_weighting``."""
    from tailorlm.adapt.shift import proxy_a_distance

    source_texts = [str(text) for text in data.train["text"]]
    if len(source_texts) != len(encoded.train):
        raise RuntimeError(f"{len(source_texts)} source training texts for {len(encoded.train)} encoded rows: "
                           "instance weights would not line up with their rows")
    require_rows(len(source_texts), len(target_texts))
    source, target = frozen_features(recipe, resolved, tokenizer, [source_texts, target_texts], encoded.max_length)
    seed = recipe.data.seed
    p_target = domain_probabilities(source, target, seed)
    clip = recipe.adapt.weight_clip
    weights = density_ratio_weights(p_target, len(source), len(target), clip)
    clipped_rows = int((weights >= clip * (1 - 1e-9)).sum())
    apply_weights(encoded, weights)
    report = weight_report(source_texts, weights, clip, clipped_rows) | proxy_a_distance(source, target, seed)
    caution = overlap_caution(report["domain_accuracy"])
    return report | ({"caution": caution} if caution else {})
