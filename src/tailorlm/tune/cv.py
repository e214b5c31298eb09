"""k-fold cross-validation (``validation.kfold``): k normal runs, one per fold, and their mean ± std.

One validation split gives one number whose noise nobody sees; k folds show the spread. The pool is the training
data the pipeline prepared: the train split plus its validation rows (each fold brings its own validation, so
a separate one would be wasted). The pool is split with scikit-learn's (Stratified)KFold, shuffled with
``training.seed``; fold K trains on the other folds and is validated (early stopping, best checkpoint) on its own
held-out part. The test split is never touched, so every fold is also scored on the same test rows.

Layout: ``output_dir/folds/fold-K/`` is a complete run directory each; ``output_dir`` holds ``folds.json`` (the
row ids of every fold, so the assignment can be checked and reused), ``metrics.json`` (per-fold metrics and
mean ± std of each validation and test metric) and the report. Baselines are measured once, in fold 1: the
test split is the same for every fold.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import DataError, RecipeError
from tailorlm.lifecycle import group_run
from tailorlm.recipe import Recipe, recipe_from_dict
from tailorlm.rundir import RunDir
from tailorlm.tasks import get_spec

#: numbers in a metrics dict that are bookkeeping, not scores to average
NOT_SCORES = frozenset({"epoch", "step", "n", "support"})

FoldHook = Callable[[int, dict[str, Any]], None]


def check_kfold(recipe: Recipe) -> int:
    """The number of folds, or a one-line error when the task cannot be cross-validated."""
    k = int(recipe.validation.kfold or 0)
    if k and not get_spec(recipe.task).has("kfold"):  # one labelled row per text (tasks/spec.py)
        raise RecipeError(
            f"validation.kfold: k-fold is supported for classification, not task '{recipe.task}'; "
            "set validation.kfold: 0"
        )
    return k


# ------------------------------------------------------------------------------------------ fold assignment


def pool_of(data: PreparedData) -> pd.DataFrame:
    """The rows folds are cut from: train then validation, index 0..n-1."""
    return pd.concat([data.train, data.validation], ignore_index=True)


def assign_folds(pool: pd.DataFrame, k: int, stratified: bool, seed: int) -> list[np.ndarray]:
    """The held-out (validation) row positions of each fold; every pool row is held out exactly once."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if len(pool) < k:
        raise DataError(f"validation.kfold={k}: only {len(pool)} training rows; lower validation.kfold")
    if stratified:
        counts = pool["label"].value_counts()
        if int(counts.iloc[-1]) < k:
            raise DataError(
                f"validation.kfold={k}: label '{counts.index[-1]}' has only {int(counts.iloc[-1])} training rows, "
                "fewer than the folds; lower validation.kfold or set validation.stratified: false"
            )
        splitter: Any = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    else:
        splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [held for _, held in splitter.split(np.zeros(len(pool)), pool["label"])]


def row_ids(pool: pd.DataFrame) -> list[Any]:
    """A stable id per pool row: its row number in the file, or ``source#row`` when rows come from several files."""
    if pool["source"].nunique() <= 1:
        return [int(r) for r in pool["row"]]
    return [f"{s}#{int(r)}" for s, r in zip(pool["source"], pool["row"], strict=True)]


def folds_payload(pool: pd.DataFrame, folds: list[np.ndarray], recipe: Recipe) -> dict[str, Any]:
    """folds.json: per fold the held-out row ids and label counts; the pool's ids and label counts."""
    ids = row_ids(pool)
    labels = pool["label"].astype(str)
    return {
        "kfold": len(folds),
        "stratified": recipe.validation.stratified,
        "seed": recipe.training.seed,
        "id": "row number in the training file" if isinstance(ids[0], int) else "source#row",
        "pool": {"rows": len(pool), "ids": ids, "label_counts": labels.value_counts().sort_index().to_dict()},
        "folds": [
            {
                "fold": i + 1,
                "validation_ids": [ids[j] for j in held],
                "validation_label_counts": labels.iloc[held].value_counts().sort_index().to_dict(),
                "train_rows": len(pool) - len(held),
            }
            for i, held in enumerate(folds)
        ],
    }


def fold_data(data: PreparedData, pool: pd.DataFrame, held: np.ndarray) -> PreparedData:
    """The prepared data with train and validation replaced by one fold's; test and labels unchanged."""
    mask = np.zeros(len(pool), dtype=bool)
    mask[held] = True
    return dataclasses.replace(
        data, train=pool[~mask].reset_index(drop=True), validation=pool[mask].reset_index(drop=True)
    )


def fold_recipe(recipe: Recipe, index: int) -> Recipe:
    """The recipe of one fold: its own run directory, k-fold off, baselines only in the first fold."""
    raw = recipe.model_dump(mode="json")
    raw["validation"]["kfold"] = 0
    raw["output_dir"] = str(Path(recipe.output_dir) / "folds" / f"fold-{index + 1}")
    if index > 0:
        raw["baseline"]["zero_shot"] = raw["baseline"]["linear_probe"] = False
    return recipe_from_dict(raw, f"fold {index + 1}")


# ------------------------------------------------------------------------------------------ running


def run_cv(recipe: Recipe, console: Console, extra_callbacks: list[Any] | None = None,
           on_fold: FoldHook | None = None) -> dict[str, Any]:
    """Train and evaluate every fold, then write the summary; returns the summary metrics.json.

    ``on_fold(index, summary)`` is called after each fold with the running mean ± std, so a tuner can prune.
    """
    from tailorlm.tasks.defaults import fill_model_name

    k = check_kfold(recipe)
    fill_model_name(recipe)
    with group_run(recipe, console, "kfold", folds=k) as opened:  # lifecycle.py: status, SIGTERM, tracking
        return _run_folds(recipe, k, opened.run_dir, console, extra_callbacks, on_fold)


def _run_folds(recipe: Recipe, k: int, run_dir: RunDir, console: Console, extra_callbacks: list[Any] | None,
               on_fold: FoldHook | None) -> dict[str, Any]:
    from tailorlm.report import render_report
    from tailorlm.run import run as run_pipeline

    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for index in range(k):
        console.print(f"[bold]fold {index + 1} of {k}[/]")
        metrics = run_pipeline(fold_recipe(recipe, index), console, extra_callbacks,
                               reshape=_fold_adjuster(recipe, k, index, run_dir))
        results.append(metrics)
        summary = summarise(results)
        console.print(f"fold {index + 1}: {_headline(summary, recipe)}")
        if on_fold is not None:
            on_fold(index, summary)
    metrics = combined_metrics(results, recipe, round(time.perf_counter() - started, 3))
    run_dir.write_json("metrics.json", metrics)
    first = Path(recipe.output_dir) / "folds" / "fold-1" / "data_report.json"
    if first.exists():
        run_dir.write_text("data_report.json", first.read_text(encoding="utf-8"))
    render_report(run_dir.path)
    return metrics


def _fold_adjuster(recipe: Recipe, k: int, index: int, run_dir: RunDir) -> Callable[[PreparedData], PreparedData]:
    """The hook that swaps the prepared splits for fold ``index``; fold 1 also records folds.json."""

    def adjust(data: PreparedData) -> PreparedData:
        pool = pool_of(data)
        folds = assign_folds(pool, k, recipe.validation.stratified, recipe.training.seed)
        if index == 0:
            run_dir.write_json("folds.json", folds_payload(pool, folds, recipe))
        return fold_data(data, pool, folds[index])

    return adjust


# ------------------------------------------------------------------------------------------ summary


def _scores(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in NOT_SCORES and math.isfinite(v)}


def mean_std(rows: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (ddof=1; 0 for one fold) of each score every row has."""
    keys = [k for k in rows[0] if all(k in r for r in rows)] if rows else []
    out: dict[str, dict[str, float]] = {"mean": {}, "std": {}}
    for key in keys:
        values = np.array([r[key] for r in rows], dtype=float)
        out["mean"][key] = round(float(values.mean()), 6)
        out["std"][key] = round(float(values.std(ddof=1)) if len(values) > 1 else 0.0, 6)
    return out


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-fold validation and test scores and their mean ± std."""
    validation = [_scores(m.get("validation")) for m in results]
    test = [_scores(m.get("tuned")) for m in results]
    folds = [
        {"fold": i + 1, "dir": str(Path((m.get("model") or {}).get("path") or ".").parent),
         "data": m.get("data"), "validation": v, "test": t}
        for i, (m, v, t) in enumerate(zip(results, validation, test, strict=True))
    ]
    return {"k": len(results), "folds": folds, "validation": mean_std(validation), "test": mean_std(test)}


def _headline(summary: dict[str, Any], recipe: Recipe) -> str:
    from tailorlm.tasks import get_task

    metric = recipe.training.metric or get_task(recipe.task).default_metric
    val = summary["validation"]
    if metric not in val["mean"]:
        return "done"
    return f"validation {metric} mean {val['mean'][metric]:.4f} ± {val['std'][metric]:.4f} over {summary['k']} folds"


def combined_metrics(results: list[dict[str, Any]], recipe: Recipe, total_s: float) -> dict[str, Any]:
    """The top-level metrics.json: fold 1's facts, the mean scores as ``tuned``/``validation``, and ``cv``."""
    first = results[0]
    summary = summarise(results) | {"stratified": recipe.validation.stratified, "seed": recipe.training.seed,
                                    "std": "sample standard deviation (ddof=1) over folds"}
    tuned_mean = summary["test"]["mean"] | {"n": (first.get("tuned") or {}).get("n")}
    train = first.get("train") or {}
    return {
        "task": first.get("task"),
        **({"labels": first["labels"]} if "labels" in first else {}),
        "model": (first.get("model") or {}) | {"path": str(Path(recipe.output_dir) / "folds")},
        "baseline": first.get("baseline") or {},
        "tuned": tuned_mean,
        "tuned_std": summary["test"]["std"],
        "validation": summary["validation"]["mean"],
        "cv": summary,
        "train": {key: train.get(key) for key in ("trainable_params", "total_params")}
        | {"runtime_s": round(sum((m.get("train") or {}).get("runtime_s", 0.0) for m in results), 3)},
        "data": first.get("data"),
        "timings_s": {f"fold-{i + 1}": (m.get("timings_s") or {}).get("total") for i, m in enumerate(results)}
        | {"total": total_s},
    }
