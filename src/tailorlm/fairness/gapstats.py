"""Statistics of a gap between groups that a reviewer can trust: an interval that holds the reported gap and can
hold zero, and a test of "no difference between groups at all".

The naive percentile bootstrap of (best group - worst group) is biased upward: the maximum of noisy group scores
minus their minimum is positive even when every group is served alike, so its interval can exclude the point
estimate and never includes zero. Here instead:

- **interval**: the two groups are named once, on the test split as it is (best and worst); the *signed*
  difference between those two named groups is bootstrapped, resampling rows within each group (stratified, so
  both groups keep their sizes), and the 95% interval is the estimate +- 1.96 bootstrap standard errors (normal
  interval, clipped to [-1, 1]). It always contains the estimate and includes zero when the difference is within
  noise.
- **test**: a permutation test of "no difference between any groups": the groups of the compared rows are
  shuffled (keeping their sizes), the spread (best minus worst) recomputed each time; the p-value is
  (1 + shuffles at least as large as observed) / (1 + shuffles). Valid whatever the number of groups, because the
  selection of best and worst is redone inside every shuffle.
- **Holm** (1979) adjusts the p-values of one system's tests together (accuracy gap, macro-F1 gap, and the
  share-labelled spread of each label, i.e. demographic parity), so more labels do not mean more false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tailorlm.evaluate.stats import ALPHA, LEVEL, RESAMPLES, SEED

#: rows x resamples per chunk: bounds the memory of large test sets
CHUNK_CELLS = 2_000_000
Z95 = 1.959963984540054
METHOD = ("stratified bootstrap of the signed difference between the two named groups (normal interval from its "
          "standard error); permutation test of group labels for any difference, Holm-adjusted")


def class_counts(t: np.ndarray, p: np.ndarray, g: np.ndarray, n_groups: int, n_labels: int,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per resample, group and label: texts of that label, texts predicted as it, and the right ones among them.

    ``t``, ``p``, ``g``: (k, n) arrays. Three bincounts over (resample, group, label) keys; rows of groups not
    compared (code -1) are left out.
    """
    k = t.shape[0]
    base = (np.arange(k)[:, None] * n_groups + g) * n_labels
    kept = g >= 0
    size = k * n_groups * n_labels

    def count(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.bincount((base + values)[mask], minlength=size).reshape(k, n_groups, n_labels)

    return count(t, kept), count(p, kept), count(t, kept & (t == p))


def group_scores(true: np.ndarray, pred: np.ndarray, right: np.ndarray, metric: str) -> np.ndarray:
    """(resamples, groups) accuracy, macro-F1 or ``selection:<code>``; NaN for a group absent from a resample.

    Macro-F1 averages over the labels present in the group (true or predicted), as sklearn does without ``labels``.
    """
    n = true.sum(axis=2)
    if metric == "accuracy":
        return np.divide(right.sum(axis=2), n, out=np.full(n.shape, np.nan), where=n > 0)
    if metric.startswith("selection:"):
        code = int(metric.split(":", 1)[1])
        return np.divide(pred[:, :, code], n, out=np.full(n.shape, np.nan), where=n > 0)
    denom = true + pred
    f1 = np.divide(2 * right, denom, out=np.zeros(denom.shape), where=denom > 0)
    present = (denom > 0).sum(axis=2)
    return np.divide(f1.sum(axis=2), present, out=np.full(present.shape, np.nan), where=present > 0)


def spread(values: np.ndarray) -> np.ndarray:
    """Best minus worst group per resample (rows); 0 where fewer than two groups were drawn at all."""
    valid = ~np.isnan(values)
    high = np.where(valid, values, -np.inf).max(axis=1)
    low = np.where(valid, values, np.inf).min(axis=1)
    return np.where(valid.sum(axis=1) >= 2, high - low, 0.0)


def _chunked(total: int, width: int) -> list[int]:
    per = max(1, CHUNK_CELLS // max(width, 1))
    return [min(per, total - start) for start in range(0, total, per)]


def named_difference_ci(t: np.ndarray, p: np.ndarray, codes: np.ndarray, high: int, low: int, metric: str,
                        n_labels: int, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL,
                        ) -> dict[str, Any]:
    """Interval of score(group ``high``) - score(group ``low``), resampling rows within each of the two groups."""
    rows = [np.flatnonzero(codes == high), np.flatnonzero(codes == low)]
    pair = np.concatenate([np.zeros(len(rows[0]), dtype=np.int64), np.ones(len(rows[1]), dtype=np.int64)])
    both = np.concatenate(rows)
    observed = group_scores(*class_counts(t[both][None], p[both][None], pair[None], 2, n_labels), metric)[0]
    estimate = float(observed[0] - observed[1])
    rng = np.random.default_rng(seed)
    diffs = []
    for k in _chunked(resamples, len(both)):
        idx = np.concatenate([r[rng.integers(0, len(r), size=(k, len(r)))] for r in rows], axis=1)
        scores = group_scores(*class_counts(t[idx], p[idx], np.broadcast_to(pair, idx.shape), 2, n_labels), metric)
        diffs.append(scores[:, 0] - scores[:, 1])
    values = np.concatenate(diffs)
    values = values[np.isfinite(values)]
    se = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    z = Z95 if level == LEVEL else _z(level)
    return {"estimate": estimate, "low": max(-1.0, estimate - z * se), "high": min(1.0, estimate + z * se),
            "standard_error": se, "level": level, "resamples": resamples, "seed": seed,
            "method": "stratified bootstrap of the signed difference, normal interval"}


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def permutation_pvalues(t: np.ndarray, p: np.ndarray, codes: np.ndarray, n_groups: int, n_labels: int,
                        metrics: Sequence[str], permutations: int = RESAMPLES, seed: int = SEED,
                        ) -> dict[str, float | None]:
    """Per metric: permutation p-value of the spread between groups under "group labels are exchangeable"."""
    kept = codes >= 0
    tk, pk, gk = t[kept], p[kept], codes[kept]
    if n_groups < 2 or len(gk) == 0:
        return dict.fromkeys(metrics)

    def spreads(g: np.ndarray) -> dict[str, np.ndarray]:
        counts = class_counts(np.broadcast_to(tk, g.shape), np.broadcast_to(pk, g.shape), g, n_groups, n_labels)
        return {m: spread(group_scores(*counts, m)) for m in metrics}

    observed = {m: v[0] for m, v in spreads(gk[None]).items()}
    rng = np.random.default_rng(seed)
    above = dict.fromkeys(metrics, 0)
    for k in _chunked(permutations, len(gk)):
        shuffled = rng.permuted(np.broadcast_to(gk, (k, len(gk))), axis=1)
        for m, values in spreads(shuffled).items():
            above[m] += int((values >= observed[m] - 1e-12).sum())
    return {m: (1 + above[m]) / (1 + permutations) for m in metrics}


def holm(pvalues: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment of the named p-values together (None stays None)."""
    named = sorted(((v, k) for k, v in pvalues.items() if v is not None))
    m = len(named)
    adjusted: dict[str, float | None] = dict.fromkeys(pvalues)
    running = 0.0
    for i, (value, key) in enumerate(named):
        running = max(running, min(1.0, (m - i) * value))
        adjusted[key] = running
    return adjusted


def significant(p_holm: float | None, alpha: float = ALPHA) -> bool | None:
    return None if p_holm is None else p_holm < alpha

