"""Metrics by group: is the classifier as good for every group of texts (region, age band, customer type)?

One score over the whole test split can hide a group the model serves badly. For each system that has
per-example predictions (the tuned model and the baselines), fairlearn's ``MetricFrame`` gives accuracy, macro-F1,
and per label the selection rate (share of the group's texts given that label) and recall, by group. Then:

- the gap of accuracy and of macro-F1: best group minus worst group (fairlearn's ``between_groups`` difference)
  and worst / best (its ratio), with a 95% interval of the signed difference between those two named groups
  (stratified bootstrap, normal interval: it contains the gap and can hold zero) and a permutation-test p-value of
  "no difference between any groups", Holm-adjusted with each label's share-labelled test (``gapstats.py``);
- per label, one-vs-rest: demographic-parity difference (spread of selection rates) and equalized-odds
  difference (the larger spread of true- and false-positive rates), fairlearn's ``demographic_parity_difference``
  and ``equalized_odds_difference`` (the latter over the groups that have both rates for the label);
- whether tuning widened or narrowed each gap against the best baseline (paired bootstrap of the change).

Groups with fewer than ``min_group_size`` test rows are reported but left out of gaps and differences: a group of
three texts scores 0 or 1 by chance. A row whose group cell is empty belongs to the group ``(missing)``: counted,
never dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from tailorlm.evaluate.stats import ALPHA, Statistic, paired_bootstrap
from tailorlm.fairness.gapstats import (
    METHOD,
    class_counts,
    group_scores,
    holm,
    named_difference_ci,
    permutation_pvalues,
    significant,
    spread,
)

MISSING_GROUP = "(missing)"
#: metrics whose gap between groups is measured, with their names in prose
GAP_METRICS: dict[str, str] = {"accuracy": "accuracy", "f1_macro": "macro-F1"}


# ------------------------------------------------------------------------------------------------ groups


def group_names(values: Iterable[Any]) -> list[str]:
    """Each row's group as text; an empty cell (None, NaN, blanks) is the group ``(missing)``."""
    names = []
    for value in values:
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        text = "" if missing else " ".join(str(value).split())
        names.append(text or MISSING_GROUP)
    return names


def _group_order(groups: Sequence[str]) -> list[str]:
    """Largest group first (ties by name), ``(missing)`` last: the order tables and sentences use."""
    counts = pd.Series(list(groups)).value_counts()
    ordered = sorted(counts.index, key=lambda g: (g == MISSING_GROUP, -int(counts[g]), str(g)))
    return [str(g) for g in ordered]


def group_codes(groups: Sequence[str], compared: list[str]) -> np.ndarray:
    """Each row's position in ``compared``, -1 for rows of groups too small to compare."""
    position = {g: i for i, g in enumerate(compared)}
    return np.array([position.get(g, -1) for g in groups], dtype=np.int64)


def label_index(labels: Sequence[str], *columns: Sequence[Any]) -> dict[str, int]:
    """Label -> code; a value outside the label set (a baseline may predict one) gets its own code after them."""
    index = {str(label): i for i, label in enumerate(labels)}
    for column in columns:
        for value in column:
            index.setdefault(str(value), len(index))
    return index


# ------------------------------------------------------------------------------------------------ fairlearn


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Macro-F1 over the labels present in the group (true or predicted), as sklearn does without ``labels``."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def _selection_rate(y_true: np.ndarray, y_pred: np.ndarray, code: int) -> float:
    return float(np.mean(np.asarray(y_pred) == code)) if len(y_pred) else float("nan")


def _recall(y_true: np.ndarray, y_pred: np.ndarray, code: int) -> float:
    """Recall of one label; NaN when the group has no text of that label (nothing to find)."""
    truth = np.asarray(y_true) == code
    return float(np.mean(np.asarray(y_pred)[truth] == code)) if truth.any() else float("nan")


def metric_frame(y_true: np.ndarray, y_pred: np.ndarray, groups: Sequence[str], labels: Sequence[str]) -> Any:
    """fairlearn ``MetricFrame``: n, accuracy, macro-F1, and per label selection rate and recall, by group."""
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import accuracy_score

    metrics: dict[str, Any] = {"n": count, "accuracy": accuracy_score, "f1_macro": _macro_f1}
    for code, label in enumerate(labels):
        metrics[f"selection_rate:{label}"] = partial(_selection_rate, code=code)
        metrics[f"recall:{label}"] = partial(_recall, code=code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred,
                           sensitive_features=pd.Series(list(groups), name="group"))


def _plain(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    number = float(value)
    return number if math.isfinite(number) else None


def _scores(row: pd.Series, labels: Sequence[str]) -> dict[str, Any]:
    """One row of the MetricFrame (a group, or overall) as metrics.json holds it."""
    return {
        "n": int(row["n"]),
        "accuracy": _plain(row["accuracy"]),
        "f1_macro": _plain(row["f1_macro"]),
        "selection_rate": {label: _plain(row[f"selection_rate:{label}"]) for label in labels},
        "recall": {label: _plain(row[f"recall:{label}"]) for label in labels},
    }


def _odds_comparable(truth: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Rows of the groups that have both a true-positive and a false-positive rate for this one-vs-rest label:
    at least one text of the label and one of the others."""
    keep = [g for g in pd.unique(groups) if (truth[groups == g] == 1).any() and (truth[groups == g] == 0).any()]
    return np.isin(groups, keep)


def _equalized_odds(truth: np.ndarray, predicted: np.ndarray, groups: np.ndarray) -> float | None:
    """fairlearn's ``equalized_odds_difference`` over the groups where both of its rates are defined; None when
    fewer than two such groups remain.

    fairlearn scores a rate a group cannot have (no text of the label, or none of the others) as 0, so a group
    that merely lacks a label would show a gap of up to 1 that is nowhere in the predictions: such a group is left
    out of that label's comparison rather than compared on made-up rates.
    """
    from fairlearn.metrics import equalized_odds_difference

    rows = _odds_comparable(truth, groups)
    if len(pd.unique(groups[rows])) < 2:
        return None
    return _plain(equalized_odds_difference(truth[rows], predicted[rows], sensitive_features=groups[rows]))


def _one_vs_rest(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, labels: Sequence[str],
                 ) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """fairlearn's demographic-parity and equalized-odds differences of each label against the rest, between
    groups (equalized odds over the groups where it is defined, see ``_equalized_odds``)."""
    from fairlearn.metrics import demographic_parity_difference

    parity: dict[str, float | None] = {}
    odds: dict[str, float | None] = {}
    for code, label in enumerate(labels):
        truth, predicted = (y_true == code).astype(int), (y_pred == code).astype(int)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parity[label] = _plain(demographic_parity_difference(truth, predicted, sensitive_features=groups))
            odds[label] = _equalized_odds(truth, predicted, groups)
    return parity, odds


# ------------------------------------------------------------------------------------------------ gaps


def gap_stat(y_true: np.ndarray, y_pred: np.ndarray, codes: np.ndarray, n_groups: int, metric: str,
             n_labels: int) -> Statistic:
    """The gap of ``metric`` between compared groups, on resampled test rows (``codes``: -1 = not compared)."""

    def stat(idx: np.ndarray) -> np.ndarray:
        counts = class_counts(y_true[idx], y_pred[idx], codes[idx], n_groups, n_labels)
        return spread(group_scores(*counts, metric))

    return stat


def _gap(by_group: dict[str, dict[str, Any]], compared: list[str], metric: str, t: np.ndarray, p: np.ndarray,
         codes: np.ndarray, n_labels: int) -> dict[str, Any] | None:
    """Difference (best - worst), ratio (worst / best), which groups, and the interval of the signed difference
    between those two named groups (``gapstats.named_difference_ci``: it contains the difference, can hold zero)."""
    values = {g: by_group[g][metric] for g in compared if by_group[g][metric] is not None}
    if len(values) < 2:
        return None
    highest = max(values, key=lambda g: (values[g], g))
    lowest = min(values, key=lambda g: (values[g], g))
    high, low = values[highest], values[lowest]
    ci = named_difference_ci(t, p, codes, compared.index(highest), compared.index(lowest), metric, n_labels)
    return {"difference": high - low, "ratio": low / high if high > 0 else None, "highest": highest,
            "highest_value": high, "lowest": lowest, "lowest_value": low,
            "ci": {k: ci.get(k) for k in ("low", "high", "level", "resamples", "seed", "method", "standard_error")}}


def _tests(result: dict[str, Any], t: np.ndarray, p: np.ndarray, codes: np.ndarray, labels: Sequence[str],
           n_labels: int) -> None:
    """Permutation p-values of "no difference between groups" for both gaps and each label's share labelled,
    Holm-adjusted together; written into the gaps and ``parity_tests``."""
    n_groups = len(result["compared"])
    metrics = [*GAP_METRICS, *(f"selection:{code}" for code in range(len(labels)))]
    raw = permutation_pvalues(t, p, codes, n_groups, n_labels, metrics)
    adjusted = holm(raw)
    for metric in GAP_METRICS:
        gap = result["gaps"].get(metric)
        if gap is not None:
            gap |= {"p_value": raw[metric], "p_holm": adjusted[metric], "significant": significant(adjusted[metric])}
    result["parity_tests"] = {
        label: {"p_value": raw[f"selection:{code}"], "p_holm": adjusted[f"selection:{code}"],
                "significant": significant(adjusted[f"selection:{code}"])} for code, label in enumerate(labels)}
    result["tests"] = {"method": METHOD, "tests_adjusted": sum(v is not None for v in raw.values())}


# ------------------------------------------------------------------------------------------------ one system


def system_audit(y_true: Sequence[str], y_pred: Sequence[str], groups: Sequence[str], labels: Sequence[str],
                 min_group_size: int) -> dict[str, Any]:
    """By-group metrics, gaps with intervals, and one-vs-rest parity/odds differences of one system's predictions."""
    index = label_index(labels, y_true, y_pred)
    t = np.array([index[str(v)] for v in y_true])
    p = np.array([index[str(v)] for v in y_pred])
    frame = metric_frame(t, p, groups, labels)
    order = _group_order(groups)
    by_group = {g: _scores(frame.by_group.loc[g], labels) for g in order}
    for g in order:
        by_group[g]["too_small"] = by_group[g]["n"] < min_group_size
    compared = [g for g in order if not by_group[g]["too_small"]]
    codes = group_codes(groups, compared)
    result: dict[str, Any] = {"overall": _scores(frame.overall, labels), "by_group": by_group, "compared": compared}
    result["gaps"] = {m: _gap(by_group, compared, m, t, p, codes, len(index)) for m in GAP_METRICS}
    _tests(result, t, p, codes, labels, len(index))
    if len(compared) >= 2:
        mask = codes >= 0
        parity, odds = _one_vs_rest(t[mask], p[mask], np.asarray(groups, dtype=object)[mask], labels)
    else:
        parity = odds = dict.fromkeys(labels)
    result["demographic_parity_difference"] = parity
    result["equalized_odds_difference"] = odds
    return result


# ------------------------------------------------------------------------------------------------ all systems


def _system_predictions(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The tuned model's predictions, then each baseline's that predicted every row."""
    systems = {"tuned": [r.get("predicted") for r in rows]}
    names = sorted({name for r in rows for name in (r.get("baselines") or {})})
    for name in names:
        predicted = [(r.get("baselines") or {}).get(name, {}).get("predicted") for r in rows]
        if all(v is not None for v in predicted):
            systems[name] = predicted
    return systems


def _gap_change(rows: list[dict[str, Any]], systems: dict[str, list[Any]], audits: dict[str, dict[str, Any]],
                groups: Sequence[str], labels: Sequence[str]) -> dict[str, Any] | None:
    """Did tuning widen or narrow each gap against the best baseline (macro-F1)? Paired bootstrap of the change."""
    scored = {name: a["overall"]["f1_macro"] for name, a in audits.items() if name != "tuned"}
    scored = {name: v for name, v in scored.items() if v is not None}
    compared = audits["tuned"]["compared"]
    if not scored or len(compared) < 2:
        return None
    best = max(scored, key=lambda name: (scored[name], name))
    gold = [r.get("label") for r in rows]
    index = label_index(labels, gold, *systems.values())
    t = np.array([index[str(v)] for v in gold])
    codes = group_codes(groups, compared)
    change: dict[str, Any] = {"baseline": best}
    for metric in GAP_METRICS:
        tuned_gap, base_gap = audits["tuned"]["gaps"][metric], audits[best]["gaps"][metric]
        if tuned_gap is None or base_gap is None:
            continue
        stats = [gap_stat(t, np.array([index[str(v)] for v in systems[name]]), codes, len(compared), metric,
                          len(index)) for name in ("tuned", best)]
        test = paired_bootstrap(stats[0], stats[1], len(t))
        direction = "narrowed" if test["difference"] < 0 else "widened" if test["difference"] > 0 else "unchanged"
        change[metric] = {"tuned_gap": tuned_gap["difference"], "baseline_gap": base_gap["difference"],
                          "change": test["difference"], "low": test["low"], "high": test["high"],
                          "p_value": test["p_value"], "direction": direction,
                          "significant": test["p_value"] < ALPHA}
    return change


def audit_predictions(rows: list[dict[str, Any]], groups: Sequence[str], labels: Sequence[str], group_column: str,
                      min_group_size: int) -> dict[str, Any]:
    """The by-group audit of every system in ``rows`` (predictions.jsonl rows, aligned with ``groups``)."""
    if len(rows) != len(groups):
        raise ValueError(f"{len(rows)} prediction rows but {len(groups)} group values")
    gold = [r.get("label") for r in rows]
    systems = _system_predictions(rows)
    audits = {name: system_audit(gold, predicted, groups, labels, min_group_size)
              for name, predicted in systems.items()}
    order = _group_order(groups)
    counts = pd.Series(list(groups)).value_counts()
    return {
        "group_column": group_column,
        "min_group_size": min_group_size,
        "n": len(rows),
        "groups": {g: int(counts[g]) for g in order},
        "missing": int(counts.get(MISSING_GROUP, 0)),
        "small_groups": [g for g in order if counts[g] < min_group_size],
        "systems": audits,
        "vs_best_baseline": _gap_change(rows, systems, audits, groups, labels),
    }
