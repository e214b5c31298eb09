"""Would more labels help? ``tailor run --data-curve`` (``report.data_curve``): a learning curve over labelled rows.

After the main run, the same recipe is run again on 25% and 50% of the prepared training split (validation and
test unchanged, same seed; stratified by label for classification, and nested: the 25% rows are inside the 50%
ones), each a complete run in ``output_dir/data-curve/frac-25/`` and ``frac-50/``, through ``run.run``'s
``adjust_data`` hook as k-fold uses it. The 100% point is the main run. Keys left at ``auto`` are resolved again
for each size (epochs, batch, rate: what tailor would pick for that many labels, so the curve answers "what
would tailor reach with N labels"); ``learning_rate: find`` reuses the main run's found rate. Baselines are
measured once, in the main run.

**The model** (``MODEL``): the test error falls as a power law of the labelled rows, error(n) = b·n^(−c) with
c ≥ 0, where error = 1 − metric for a score in [0, 1] (100 − metric for 0-100 scores such as BLEU) and the
metric itself where lower is better (perplexity). It is fitted by least squares on log error against log n (a
straight line in log-log space: the form of empirical learning curves, Hestness et al. 2017; Figueroa et al.
2012 for small labelled sets). The extrapolation to 2× and 4× the labels is anchored at the measured 100%
point: error(s·n) = error(n)·s^(−c), so it never contradicts the run the user has. A slope that points the
wrong way (more data, worse score: noise) is clipped to c = 0, i.e. "no gain expected".

**The uncertainty**: a 95% percentile bootstrap over the test examples, paired across sizes (the same resampled
rows score all three models, from their ``predictions.jsonl``), refitting the law on every resample. It covers
test-set sampling, not the training noise of a different seed, so the true range is wider; three points also
cannot show a curve bending away from a power law. Read the answer as "likely worth labelling more" or not, not
as a promise.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import RecipeError
from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better, prose_name
from tailorlm.recipe import Recipe

FRACTIONS = (0.25, 0.5)
SCALES = (2, 4)
FILE = "data_curve.json"
CHART = "data_curve.svg"
SUBDIR = "data-curve"
MODEL = ("error(n) = b * n^(-c), c >= 0; error = 1 - metric for scores in [0, 1] (100 - metric for 0-100 "
         "scores), the metric itself where lower is better; least squares on log(error) vs log(n); extrapolated "
         "from the measured 100% point as error(s*n) = error(n) * s^(-c)")
UNCERTAINTY = ("95% percentile bootstrap over the test rows, paired across sizes, refitting the power law on each "
               "resample; test-set sampling only (a different training seed would add more)")
LEVEL = 0.95
#: below this best-case gain at 2x (in the answer's units: points, or the metric's own) the curve is "flat"
FLAT = 0.5


# ------------------------------------------------------------------------------------------ the fit


def fit_power_law(sizes: Sequence[float], errors: np.ndarray | Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(b, c) of error = b·n^(−c) by least squares on log error vs log n; ``errors`` may hold one curve per row
    (shape (k, len(sizes)), for bootstrap resamples), giving arrays of k. c < 0 is clipped to 0 (b refitted)."""
    x = np.log(np.asarray(sizes, dtype=float))
    y = np.log(np.atleast_2d(np.asarray(errors, dtype=float)))
    xc = x - x.mean()
    slope = (y - y.mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)
    c = np.maximum(-slope, 0.0)
    log_b = y.mean(axis=1) + c * x.mean()
    return np.exp(log_b), c


def to_error(values: np.ndarray, greater_is_better: bool, ceiling: float, floor: float) -> np.ndarray:
    """Metric -> error the power law models, kept above ``floor`` (a perfect score has no logarithm)."""
    error = ceiling - values if greater_is_better else values
    return np.maximum(error, floor)


def from_error(error: np.ndarray, greater_is_better: bool, ceiling: float) -> np.ndarray:
    return ceiling - error if greater_is_better else error


def ceiling_of(values: Sequence[float]) -> float:
    """1 for shares (F1, accuracy), 100 for 0-100 scores (BLEU, chrF)."""
    return 1.0 if max(values) <= 1.0 else 100.0


def extrapolate(sizes: Sequence[float], values: Sequence[float], greater_is_better: bool,
                scales: Sequence[float] = SCALES, floor: float | None = None) -> dict[str, Any]:
    """Fit the power law to (size, metric) points and predict the metric at ``scale`` × the largest size."""
    ceiling = ceiling_of(values) if greater_is_better else 0.0
    floor = floor if floor is not None else 1e-4 * (ceiling or 1.0)
    error = to_error(np.asarray(values, dtype=float), greater_is_better, ceiling, floor)
    b, c = fit_power_law(sizes, error)
    last = to_error(np.asarray(values[-1:], dtype=float), greater_is_better, ceiling, 0.0)
    predicted = {s: float(from_error(anchored(last, c, s), greater_is_better, ceiling)[0]) for s in scales}
    return {"b": float(b[0]), "c": float(c[0]), "ceiling": ceiling, "predicted": predicted}


def anchored(error_now: np.ndarray, c: np.ndarray, scale: float) -> np.ndarray:
    """The error at ``scale`` × the labels, from the measured error at the largest size and the fitted slope:
    error(s·n) = error(n) · s^(−c). Anchoring at the measurement (rather than reading the fitted line) keeps the
    extrapolation from contradicting the run the user has: a perfect score stays perfect, and no gain is < 0."""
    return error_now * float(scale) ** (-c)


# ------------------------------------------------------------------------------------------ subsets


def check_data_curve(recipe: Recipe) -> None:
    """Refuse combinations the curve cannot run with, before anything trains."""
    if recipe.validation.kfold:
        raise RecipeError("report.data_curve: not with validation.kfold (each fold is already a run); set one of "
                          "them off")
    if recipe.training.num_processes > 1:
        raise RecipeError("report.data_curve: runs in one process; set training.num_processes: 1")


def start(recipe: Recipe) -> Recipe:
    """The recipe as the user gave it (``auto`` keys unresolved), kept for the smaller runs; checked first."""
    check_data_curve(recipe)
    return recipe.model_copy(deep=True)


def subset_rows(labels: Sequence[Any] | None, n: int, fraction: float, seed: int) -> np.ndarray:
    """Row positions of a ``fraction`` subset: per label when ``labels`` are given (each label keeps its share,
    at least one row), shuffled with ``seed``; nested (a smaller fraction's rows are inside a larger one's)."""
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        return np.sort(order[: max(1, round(fraction * n))])
    values = np.asarray([str(v) for v in labels])
    kept = []
    for label in sorted(set(values)):
        rows = np.flatnonzero(values == label)
        rows = rows[rng.permutation(len(rows))]
        kept.append(rows[: max(1, round(fraction * len(rows)))])
    return np.sort(np.concatenate(kept))


def subset_train(data: PreparedData, fraction: float, seed: int, stratified: bool) -> PreparedData:
    """The prepared data with ``train`` cut to ``fraction`` of its rows (validation, test, labels unchanged)."""
    train = data.train
    labels = list(train["label"]) if stratified and "label" in train else None
    rows = subset_rows(labels, len(train), fraction, seed)
    return dataclasses.replace(data, train=train.iloc[rows].reset_index(drop=True))


def curve_recipe(original: Recipe, main: Recipe, fraction: float) -> Recipe:
    """The recipe of one smaller run: its own folder, no curve of its own, no baselines, same seed and settings."""
    copy = original.model_copy(deep=True)
    copy.output_dir = str(Path(main.output_dir) / SUBDIR / f"frac-{round(fraction * 100)}")
    copy.report.data_curve = False
    copy.baseline.zero_shot = copy.baseline.linear_probe = False
    copy.model.name = main.model.name
    if copy.training.learning_rate == "find":  # the main run's range test already chose it
        copy.training.learning_rate = main.training.learning_rate
    return copy


# ------------------------------------------------------------------------------------------ running


def run_data_curve(original: Recipe, main: Recipe, metrics: dict[str, Any], console: Console) -> dict[str, Any]:
    """Train the smaller runs, fit and extrapolate; write data_curve.json and .svg, add it to metrics.json, redraw
    the report.

    Returns the main run's metrics with ``data_curve`` added.
    """
    from tailorlm.report import render_report
    from tailorlm.run import run as run_pipeline
    from tailorlm.rundir import RunDir
    from tailorlm.tasks import get_spec

    stratified = get_spec(main.task).has("stratify")  # smaller subsets keep the class mix
    runs: list[tuple[float, Path, dict[str, Any]]] = []
    for fraction in FRACTIONS:
        console.print(f"[bold]data curve: {fraction:.0%} of the training rows[/]")
        sub = curve_recipe(original, main, fraction)
        sub_metrics = run_pipeline(sub, console, reshape=lambda d, f=fraction: subset_train(
            d, f, main.training.seed, stratified))
        runs.append((fraction, Path(sub.output_dir), sub_metrics))
    runs.append((1.0, Path(main.output_dir), metrics))
    result = analyse(runs, str(metrics.get("task")), metrics.get("labels") or [])
    console.print(f"data curve: {result['answer']}")
    run_dir = RunDir(main.output_dir)
    run_dir.write_json(FILE, result)
    metrics = metrics | {"data_curve": result}
    run_dir.write_json("metrics.json", metrics)
    render_report(run_dir.path)
    from tailorlm.report.data_curve import data_curve_chart_svg
    from tailorlm.report.model import load_run

    run_dir.write_text(CHART, data_curve_chart_svg(load_run(run_dir.path)))  # the plot on its own, too
    return metrics


def analyse(runs: list[tuple[float, Path, dict[str, Any]]], task: str, labels: Sequence[str]) -> dict[str, Any]:
    """data_curve.json's content from (fraction, run dir, metrics) per size, smallest first."""
    from tailorlm.evaluate.predictions import FILE as PREDICTIONS
    from tailorlm.evaluate.predictions import main_metric, read_jsonl

    rows = [read_jsonl(d / PREDICTIONS) if (d / PREDICTIONS).is_file() else [] for _, d, _ in runs]
    tuned = runs[-1][2].get("tuned") or {}
    metric = main_metric(rows[-1], task) if rows[-1] else TASK_MAIN_METRIC.get(task, "f1_macro")
    if metric not in tuned:
        metric = "f1_macro" if "f1_macro" in tuned else next(iter(tuned), metric)
    greater = greater_is_better(metric)
    sizes = [float((m.get("data") or {}).get("train") or 0) for _, _, m in runs]
    values = [float((m.get("tuned") or {}).get(metric, math.nan)) for _, _, m in runs]
    top = runs[-1][1]
    points = [{"fraction": f, "train_rows": int(n), "metric": v, "run_dir": _relative(d, top)}
              for (f, d, _), n, v in zip(runs, sizes, values, strict=True)]
    result: dict[str, Any] = {"metric": metric, "greater_is_better": greater, "model": MODEL, "points": points}
    if len({n for n in sizes if n > 0}) < 2 or not all(math.isfinite(v) for v in values):
        return result | {"answer": "not enough distinct, scored training sizes to fit a learning curve"}
    n_test = int(tuned.get("n") or len(rows[-1]) or 0)
    floor = 0.5 / n_test * (ceiling_of(values) if greater else 1.0) if n_test and greater else None
    fit = extrapolate(sizes, values, greater, floor=floor)
    interval = _bootstrap(sizes, rows, metric, labels, greater, fit["ceiling"], floor)
    result["fit"] = {"b": fit["b"], "c": fit["c"], "ceiling": fit["ceiling"]}
    result["extrapolation"] = [_scaled(s, sizes[-1], values[-1], fit["predicted"][s], interval.get(s))
                               for s in SCALES]
    result["uncertainty"] = UNCERTAINTY if interval else "no interval: the runs' per-example predictions do not match"
    result["answer"] = answer(result, metric)
    return result


def _relative(folder: Path, top: Path) -> str:
    """A sub-run's folder relative to the main run directory, so the file stays right when the folder moves."""
    try:
        return str(folder.resolve().relative_to(top.resolve())) or "."
    except ValueError:
        return str(folder)


def _scaled(scale: float, top: float, current: float, predicted: float,
            interval: tuple[float, float] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"scale": scale, "train_rows": int(top * scale), "metric": predicted,
                             "gain": predicted - current}
    if interval:
        entry |= {"low": interval[0], "high": interval[1], "gain_low": interval[0] - current,
                  "gain_high": interval[1] - current}
    return entry


def _bootstrap(sizes: list[float], rows: list[list[dict[str, Any]]], metric: str, labels: Sequence[str],
               greater: bool, ceiling: float, floor: float | None) -> dict[float, tuple[float, float]]:
    """Percentile interval of the extrapolated metric at each scale, over paired resamples of the test rows."""
    from tailorlm.evaluate.stats import resample_chunks, same_test_set, system_stat

    if not all(rows) or not all(same_test_set(rows[-1], r) for r in rows[:-1]):
        return {}
    stats = [system_stat(r, metric, labels) for r in rows]
    if any(s is None for s in stats):
        return {}
    predicted: dict[float, list[np.ndarray]] = {s: [] for s in SCALES}
    floor = floor if floor is not None else 1e-4 * (ceiling or 1.0)
    for idx in resample_chunks(len(rows[-1])):
        values = np.stack([s(idx) for s in stats], axis=1)  # type: ignore[misc]
        _, c = fit_power_law(sizes, to_error(values, greater, ceiling, floor))
        now = to_error(values[:, -1], greater, ceiling, 0.0)
        for scale in SCALES:
            predicted[scale].append(from_error(anchored(now, c, scale), greater, ceiling))
    tail = (1 - LEVEL) / 2 * 100
    out = {}
    for scale, chunks in predicted.items():
        low, high = np.percentile(np.concatenate(chunks), [tail, 100 - tail])
        out[scale] = (float(low), float(high))
    return out


def answer(result: dict[str, Any], metric: str) -> str:
    """One plain sentence: how much 2× (and 4×) the labels would likely add, with the range."""
    title = prose_name(metric)
    ext = {e["scale"]: e for e in result.get("extrapolation") or []}
    two, four = ext.get(2), ext.get(4)
    if two is None:
        return "not enough data to extrapolate"
    greater = result["greater_is_better"]
    unit = 100.0 if greater and (result.get("fit") or {}).get("ceiling") == 1.0 else 1.0
    sign = 1.0 if greater else -1.0

    def better(value: float) -> float:
        """A change in the answer's units, positive = better; never -0.0."""
        return round(sign * value * unit, 1) + 0.0

    def gain(entry: dict[str, Any]) -> str:
        text = f"{better(entry['gain']):+.1f}"
        if "gain_low" in entry:
            lo, hi = sorted((better(entry["gain_low"]), better(entry["gain_high"])))
            text += f" (range {lo:+.1f} to {hi:+.1f})"
        return text

    what = f"points of {title}" if greater else f"lower {title}"
    at = (f"{gain(two)} {what} at 2x the labels ({two['train_rows']:,} rows) and {gain(four)} at 4x "
          f"({four['train_rows']:,} rows)")
    if better(two["gain"]) >= FLAT:
        sentence = f"more labels would likely help: about {at}"
    else:
        sentence = f"more labels would likely not help much: about {at}; the measured sizes show no clear gain"
    return sentence[0].upper() + sentence[1:] + "."
