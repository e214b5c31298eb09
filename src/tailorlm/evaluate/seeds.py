"""``tailor run --seeds N``: the same recipe trained N times (seed, seed+1, ...), summarised as mean ± std.

One fine-tuning run on a small data set can land a few points up or down by the seed alone (head initialisation,
batch order, dropout). Repeating it says how much of a gain is real. This wrapper calls ``run.run`` on copies of
the recipe, each into ``output_dir/seed-<s>/`` (a complete run directory), then writes the top level:

- ``metrics.json``: ``tuned`` holds the mean of each test metric and ``tuned_std`` its standard deviation
  (sample std, n-1), ``seeds`` the per-seed main metric, ``significance`` a bootstrap CI of the seed-mean main
  metric over test examples and the paired test against the better baseline (evaluate/stats.py);
- ``recipe.resolved.yaml``, ``status.json`` and the report, so ``tailor compare`` and ``tailor report`` treat it
  like any run.
"""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path
from typing import Any

from rich.console import Console

from tailorlm.evaluate.predictions import load_runs, main_metric
from tailorlm.evaluate.stats import significance
from tailorlm.lifecycle import Opened, group_run
from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better
from tailorlm.recipe import Recipe


def seed_recipe(recipe: Recipe, seed: int) -> Recipe:
    """A copy of the recipe for one seed: its own seed and folder, and one run (no recursion)."""
    copy = recipe.model_copy(deep=True)
    copy.training.seed = seed
    copy.training.seeds = 1
    copy.output_dir = per_seed_dir(recipe, seed)
    return copy


def per_seed_dir(recipe: Recipe, seed: int) -> str:
    return str(Path(recipe.output_dir) / f"seed-{seed}")


def run_seeds(recipe: Recipe, console: Console | None = None) -> dict[str, Any]:
    """Run the recipe once per seed and write the top-level summary; returns its metrics.json content."""
    from tailorlm.tasks.defaults import fill_model_name

    console = console or Console(stderr=True)
    fill_model_name(recipe)
    with group_run(recipe, console, "seeds") as opened:  # lifecycle.py: status, SIGTERM, one MLflow parent
        return _run_seeds(recipe, console, opened)


def _run_seeds(recipe: Recipe, console: Console, opened: Opened) -> dict[str, Any]:
    from tailorlm.report import render_report
    from tailorlm.run import run

    run_dir = opened.run_dir
    seeds = [recipe.training.seed + i for i in range(recipe.training.seeds)]
    per_seed: list[dict[str, Any]] = []
    for i, seed in enumerate(seeds, start=1):
        console.print(f"[bold]seed {seed}[/] ({i} of {len(seeds)})")
        per_seed.append(run(seed_recipe(recipe, seed), console))
    metrics = summarise(run_dir.path, seeds, per_seed)
    run_dir.write_json("metrics.json", metrics)
    first_report = Path(per_seed_dir(recipe, seeds[0])) / "data_report.json"
    if first_report.is_file():  # the same data in every seed: the report's data section reads it here
        shutil.copyfile(first_report, run_dir.data_report)
    render_report(run_dir.path)
    opened.finished = {"seeds": seeds}
    return metrics


def _flat(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "n"}


def mean_std(values: list[dict[str, Any] | None]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-key mean and sample standard deviation over the runs that have the key (std 0 for one run)."""
    flats = [_flat(v) for v in values]
    keys = [k for k in flats[0] if all(k in f for f in flats)] if flats else []
    mean = {k: statistics.fmean(f[k] for f in flats) for k in keys}
    std = {k: statistics.stdev([f[k] for f in flats]) if len(flats) > 1 else 0.0 for k in keys}
    return mean, std


def summarise(top: Path, seeds: list[int], per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """The top-level metrics.json of a multi-seed run (see the module docstring)."""
    first = per_seed[0]
    mean, std = mean_std([m.get("tuned") for m in per_seed])
    n = (first.get("tuned") or {}).get("n")
    runs = load_runs(top)
    metric = main_metric(runs[0], str(first.get("task"))) if runs and runs[0] else None
    main = metric or TASK_MAIN_METRIC.get(str(first.get("task")), "loss")
    result: dict[str, Any] = {
        "task": first.get("task"),
        **({"labels": first["labels"]} if "labels" in first else {}),
        "model": {k: v for k, v in (first.get("model") or {}).items() if k != "path"},
        "baseline": first.get("baseline") or {},
        "tuned": mean | ({"n": n} if n is not None else {}),
        "tuned_std": std,
        "seeds": {
            "values": seeds,
            "runs": [f"seed-{s}" for s in seeds],
            "metric": main,
            "per_seed": {str(s): (m.get("tuned") or {}).get(main) for s, m in zip(seeds, per_seed, strict=True)},
            "mean": mean.get(main),
            "std": std.get(main),
        },
        "train": {k: v for k, v in (first.get("train") or {}).items() if k in ("trainable_params", "total_params")}
        | {"runtime_s": round(sum((m.get("train") or {}).get("runtime_s", 0.0) for m in per_seed), 3)},
        "data": first.get("data") or {},
    }
    if runs and metric and len(runs) == len(seeds):
        stats = significance(runs, metric, first.get("labels") or [], greater_is_better(metric),
                             task=str(first.get("task")), baselines=first.get("baseline") or {})
        if stats is not None:
            result["significance"] = stats
    return result
