"""How sure can a reader be of a score, and of a gain? Bootstrap intervals and paired tests on test predictions.

A test split of a few hundred texts gives a macro-F1 that could easily move by a few points on another sample of
the same kind of data. These functions put a number on that from the per-example predictions a run writes
(``predictions.jsonl``), without any extra model calls:

- ``bootstrap_ci``: percentile bootstrap over test examples (fixed seed, so the same run gives the same interval);
- ``paired_bootstrap``: the difference between two systems scored on the *same* resampled examples;
- ``mcnemar``: exact (and mid-p) McNemar test on right/wrong pairs, the classic paired test for accuracy.

Statistics are vectorised over a chunk of resamples at once (an index matrix), so 2,000 resamples of a few
thousand examples take well under a second.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from tailorlm.evaluate.floors import is_floor

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
ALPHA = 0.05
#: resample-matrix cells per chunk: bounds memory for large test sets
_CHUNK_CELLS = 4_000_000

#: A statistic over resampled index rows: (k, n) int array -> (k,) float array.
Statistic = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------------ resampling


def resample_chunks(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> Iterator[np.ndarray]:
    """Index matrices (chunk, n) of bootstrap resamples; the same (n, resamples, seed) always gives the same ones."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_CELLS // max(n, 1))
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        yield rng.integers(0, n, size=(k, n))
        done += k


def _replicates(stat: Statistic, n: int, resamples: int, seed: int) -> np.ndarray:
    return np.concatenate([stat(idx) for idx in resample_chunks(n, resamples, seed)])


def point(stat: Statistic, n: int) -> float:
    """The statistic on the examples as they are (no resampling)."""
    return float(stat(np.arange(n)[None, :])[0])


def bootstrap_ci(
    stat: Statistic, n: int, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> dict[str, Any]:
    """Percentile bootstrap interval of ``stat`` over ``n`` test examples."""
    estimate = point(stat, n)
    if n == 0:
        return {"estimate": estimate, "low": None, "high": None, "level": level, "resamples": 0}
    values = _replicates(stat, n, resamples, seed)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return {"estimate": estimate, "low": float(low), "high": float(high), "level": level, "resamples": resamples,
            "seed": seed, "method": "percentile bootstrap over test examples"}


def paired_bootstrap(
    stat_a: Statistic, stat_b: Statistic, n: int, resamples: int = RESAMPLES, seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Any]:
    """A minus B on the same resampled examples: the interval of the difference and a two-sided p-value.

    The p-value is twice the share of resamples on the other side of zero from the observed difference
    (capped at 1), so a gain that vanishes in many resamples is not called significant.
    """
    diff = point(stat_a, n) - point(stat_b, n)

    def both(idx: np.ndarray) -> np.ndarray:
        return stat_a(idx) - stat_b(idx)

    values = _replicates(both, n, resamples, seed) if n else np.zeros(0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail]) if n else (None, None)
    p_value = float(min(1.0, 2 * min((values <= 0).mean(), (values >= 0).mean()))) if n else 1.0
    return {"test": "paired bootstrap", "difference": diff,
            "low": None if low is None else float(low), "high": None if high is None else float(high),
            "level": level, "resamples": resamples, "seed": seed, "p_value": p_value, "verdict": verdict(p_value)}


def mcnemar(a_correct: Sequence[bool] | np.ndarray, b_correct: Sequence[bool] | np.ndarray) -> dict[str, Any]:
    """Exact two-sided McNemar test (binomial on the discordant pairs) and its mid-p version.

    ``b`` counts examples A got right and B wrong, ``c`` the reverse; only those carry information.
    """
    from scipy.stats import binom, binomtest

    a = np.asarray(a_correct, dtype=bool)
    b_ = np.asarray(b_correct, dtype=bool)
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    if b + c == 0:
        exact, mid = 1.0, 1.0
    else:
        exact = float(binomtest(min(b, c), b + c, 0.5).pvalue)
        mid = float(max(0.0, exact - binom.pmf(min(b, c), b + c, 0.5)))
    return {"test": "McNemar (exact)", "a_only_correct": b, "b_only_correct": c, "p_value": exact, "mid_p": mid,
            "verdict": verdict(exact)}


def verdict(p_value: float | None, alpha: float = ALPHA) -> str:
    if p_value is None:
        return "not tested"
    return f"significant at {alpha:.0%}" if p_value < alpha else f"not significant at {alpha:.0%}"


# ------------------------------------------------------------------------------------------------ statistics


def accuracy_stat(y_true: np.ndarray, y_pred: np.ndarray) -> Statistic:
    correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(np.float64)
    return lambda idx: correct[idx].mean(axis=1)


def macro_f1_stat(y_true: np.ndarray, y_pred: np.ndarray, n_labels: int) -> Statistic:
    """Macro-F1 over every label (a label never seen nor predicted in a resample scores 0, as in sklearn)."""
    t, p = np.asarray(y_true), np.asarray(y_pred)

    def stat(idx: np.ndarray) -> np.ndarray:
        ti, pi = t[idx], p[idx]
        total = np.zeros(idx.shape[0])
        for c in range(n_labels):
            is_t, is_p = ti == c, pi == c
            tp = (is_t & is_p).sum(axis=1)
            denom = is_t.sum(axis=1) + is_p.sum(axis=1)
            total += np.divide(2 * tp, denom, out=np.zeros(idx.shape[0]), where=denom > 0)
        return total / max(n_labels, 1)

    return stat


def mean_stat(scores: Sequence[float] | np.ndarray) -> Statistic:
    values = np.asarray(scores, dtype=np.float64)
    return lambda idx: values[idx].mean(axis=1)


#: per-sentence entity counts (tasks/token_classification): entity F1 is a corpus-level ratio, not a mean
ENTITY_COUNTS = frozenset({"tp", "fp", "fn"})


def has_entity_counts(scores: Mapping[str, Any]) -> bool:
    """Whether a prediction row's scores are entity counts, so its F1 is resampled as a ratio, not a mean."""
    return set(scores) >= ENTITY_COUNTS


def entity_f1_stat(entries: Sequence[Mapping[str, Any]]) -> Statistic:
    """Micro entity F1 = 2TP / (2TP + FP + FN) over the resampled sentences' summed counts (seqeval's score)."""
    counts = np.array([[e["tp"], e["fp"], e["fn"]] for e in entries], dtype=np.float64)

    def stat(idx: np.ndarray) -> np.ndarray:
        tp, fp, fn = (counts[:, k][idx].sum(axis=-1) for k in range(3))
        denominator = 2 * tp + fp + fn
        return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return stat


def averaged(stats: Sequence[Statistic]) -> Statistic:
    """The mean of several systems' statistic on the same resample: a multi-seed run's score."""
    return lambda idx: np.mean([s(idx) for s in stats], axis=0)


# ------------------------------------------------------------------------------------------------ predictions


def _label_index(rows: list[dict[str, Any]], labels: Sequence[str]) -> dict[str, int]:
    index = {label: i for i, label in enumerate(labels)}
    for row in rows:
        for value in (row.get("label"), row.get("predicted")):
            if value is not None and str(value) not in index:
                index[str(value)] = len(index)
    return index


def is_labelled(rows: list[dict[str, Any]]) -> bool:
    """Classification-shaped predictions (gold ``label`` and ``predicted``) rather than per-example scores."""
    return bool(rows) and "label" in rows[0] and "predicted" in rows[0]


def system_stat(rows: list[dict[str, Any]], metric: str, labels: Sequence[str], system: str | None = None
                ) -> Statistic | None:
    """A statistic of one system's predictions (``system`` = a baseline's name, None = the tuned model)."""
    if is_labelled(rows):
        index = _label_index(rows, labels)
        preds = [r.get("baselines", {}).get(system, {}).get("predicted") if system else r.get("predicted")
                 for r in rows]
        if any(p is None for p in preds):
            return None
        y_true = np.array([index[str(r["label"])] for r in rows])
        y_pred = np.array([index[str(p)] for p in preds])
        if metric == "accuracy":
            return accuracy_stat(y_true, y_pred)
        if metric == "f1_macro":
            return macro_f1_stat(y_true, y_pred, len(index))
        return None
    entries = [(r.get("baselines", {}).get(system, {}) if system else r).get("scores", {}) for r in rows]
    if metric == "f1" and entries and all(map(has_entity_counts, entries)):
        return entity_f1_stat(entries)
    scores = [e.get(metric) for e in entries]
    if not rows or any(s is None for s in scores):
        return None
    return mean_stat(scores)


def correct_flags(rows: list[dict[str, Any]], system: str | None = None) -> np.ndarray | None:
    """Right/wrong per example for McNemar; None when the rows are not labelled or the system is missing."""
    if not is_labelled(rows):
        return None
    preds = [r.get("baselines", {}).get(system, {}).get("predicted") if system else r.get("predicted") for r in rows]
    if any(p is None for p in preds):
        return None
    return np.array([str(p) == str(r["label"]) for p, r in zip(preds, rows, strict=True)])


def baseline_names(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(rows[0].get("baselines", {})) if rows else []


def paired_test(
    runs_a: list[list[dict[str, Any]]], runs_b: list[list[dict[str, Any]]], metric: str, labels: Sequence[str],
    system_b: str | None = None,
) -> dict[str, Any] | None:
    """Is A better than B on the same test rows? A and B may each be several seeds (their mean is compared).

    ``system_b`` picks a baseline inside B's rows. The verdict comes from the paired bootstrap of ``metric``; for
    one run against one run on labelled rows, McNemar on accuracy is added.
    """
    stats_a = [system_stat(rows, metric, labels) for rows in runs_a]
    stats_b = [system_stat(rows, metric, labels, system_b) for rows in runs_b]
    if not stats_a or not stats_b or any(s is None for s in [*stats_a, *stats_b]):
        return None
    n = len(runs_a[0])
    result: dict[str, Any] = {"metric": metric, "n": n,
                              "bootstrap": paired_bootstrap(averaged(stats_a), averaged(stats_b), n)}
    if len(runs_a) == 1 and len(runs_b) == 1:
        flags_a, flags_b = correct_flags(runs_a[0]), correct_flags(runs_b[0], system_b)
        if flags_a is not None and flags_b is not None:
            result["mcnemar"] = mcnemar(flags_a, flags_b)
    result["p_value"] = result["bootstrap"]["p_value"]
    result["verdict"] = result["bootstrap"]["verdict"]
    return result


def same_test_set(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
    """Paired tests need the same examples in the same order with the same gold answers."""
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return row.get("id"), row.get("text"), row.get("label", row.get("gold"))

    return len(a) == len(b) and all(key(x) == key(y) for x, y in zip(a, b, strict=True))


def significance(runs: list[list[dict[str, Any]]], metric: str, labels: Sequence[str],
                 greater_is_better: bool = True, task: str | None = None,
                 baselines: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """What metrics.json records: the CI of the (seed-mean) main metric, and the test against the best *reference*
    baseline. Floors (``evaluate/floors.py``: a random head, a majority tag) are never the bar: beating a lower
    bound proves little, so with only floors measured there is no ``vs_baseline`` and ``no_reference`` says why.
    ``baselines`` is metrics.json's ``baseline`` (its ``floor`` markers), ``task`` the run's task."""
    stats = [system_stat(rows, metric, labels) for rows in runs]
    if not runs or not runs[0] or any(s is None for s in stats):
        return None
    n = len(runs[0])
    result: dict[str, Any] = {"metric": metric, "n": n, "seeds": len(runs),
                              "ci": bootstrap_ci(averaged(stats), n)}  # type: ignore[arg-type]
    scored, floors = {}, []
    for name in baseline_names(runs[0]):
        if is_floor(name, task, (baselines or {}).get(name)):
            floors.append(name)
            continue
        stat = system_stat(runs[0], metric, labels, name)
        if stat is not None:
            scored[name] = point(stat, n)
    if not scored and floors:
        result["no_reference"] = (f"only floors were measured ({', '.join(floors)}): lower bounds, not "
                                  "alternatives, so no gain over a baseline is tested")
    if scored:
        pick = max if greater_is_better else min
        best = pick(scored, key=scored.__getitem__)
        test = paired_test(runs, [runs[0]], metric, labels, system_b=best)
        if test is not None:
            if not greater_is_better:
                test["note"] = "lower is better: a negative difference is an improvement"
            result["vs_baseline"] = {"baseline": best, "baseline_value": scored[best]} | test
    return result
