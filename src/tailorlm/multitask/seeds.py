"""``tailor run --seeds N`` on a multi-task recipe: N joint runs (seed, seed+1, ...) into ``seed-<s>/``, then per
task the mean ± std of its test metrics, the bootstrap CI of the seed-mean and the paired test against its best
reference baseline over the same test rows, its verdict, and with ``multitask.comparison: single_task`` the
multi-task vs single-task means with the paired test of the seed-means (evaluate/stats.py). The top-level
metrics.json and report have the shape of one multi-task run's, with ``tuned_std`` and ``seeds`` added."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from tailorlm.evaluate.predictions import FILE, read_jsonl
from tailorlm.evaluate.seeds import mean_std, seed_recipe
from tailorlm.lifecycle import group_run
from tailorlm.recipe import Recipe


def _rows(folder: Path) -> list[dict[str, Any]] | None:
    return read_jsonl(folder / FILE) if (folder / FILE).is_file() else None


def _task_summary(name: str, per_seed: list[dict[str, Any]], dirs: list[Path]) -> tuple[dict[str, Any], Any]:
    """(metrics.json's tasks.<name>, its significance) over the seeds."""
    from tailorlm.evaluate.stats import significance
    from tailorlm.metric_names import greater_is_better

    first = per_seed[0]["tasks"][name]
    mean, std = mean_std([m["tasks"][name]["tuned"] for m in per_seed])
    section = {k: first[k] for k in ("task", "labels", "main_metric", "loss_weight", "baseline") if k in first}
    section |= {"tuned": mean, "tuned_std": std,
                "per_seed": [m["tasks"][name]["tuned"].get(first["main_metric"]) for m in per_seed]}
    runs = [_rows(d / "tasks" / name) for d in dirs]
    test_metric = (per_seed[0].get("significance", {}).get(name) or {}).get("metric")
    if test_metric is None or any(r is None for r in runs):
        return section, None
    stats = significance(runs, test_metric, first.get("labels") or [], greater_is_better(test_metric),
                         task=first["task"], baselines=first.get("baseline") or {})
    return section, stats


def _comparison(names: list[str], per_seed: list[dict[str, Any]], dirs: list[Path]) -> dict[str, Any]:
    from tailorlm.evaluate.stats import paired_test

    tasks = {}
    for name in names:
        rows = [m["comparison"]["tasks"][name] for m in per_seed]
        multi, _ = mean_std([{"v": r["multi_task"]} for r in rows])
        single, _ = mean_std([{"v": r["single_task"]} for r in rows])
        entry = dict(rows[0]) | {"multi_task": multi.get("v"), "single_task": single.get("v"),
                                 "per_seed": [{k: r.get(k) for k in ("multi_task", "single_task")} for r in rows]}
        runs_multi = [_rows(d / "tasks" / name) for d in dirs]
        runs_single = [_rows(d / "single" / name) for d in dirs]
        test_metric = (per_seed[0].get("significance", {}).get(name) or {}).get("metric", rows[0]["metric"])
        if all(r is not None for r in [*runs_multi, *runs_single]):
            labels = per_seed[0]["tasks"][name].get("labels") or []
            entry["paired_test"] = paired_test(runs_multi, runs_single, test_metric, labels)
        tasks[name] = entry
    times = [m["comparison"]["train_time_s"] for m in per_seed]
    return {"tasks": tasks, "parameters_served": per_seed[0]["comparison"]["parameters_served"],
            "train_time_s": {k: round(sum(t[k] for t in times) / len(times), 3) for k in times[0]}}


def summarise(recipe: Recipe, seeds: list[int], per_seed: list[dict[str, Any]], dirs: list[Path]) -> dict[str, Any]:
    from tailorlm.evaluate.verdict import judge
    from tailorlm.multitask.units import task_recipe

    names = list(per_seed[0]["tasks"])
    tasks, tests, verdicts = {}, {}, {}
    for name, entry in zip(names, recipe.tasks or [], strict=True):
        tasks[name], stats = _task_summary(name, per_seed, dirs)
        if stats is not None:
            tests[name] = stats
        scratch = {"task": tasks[name]["task"], "tuned": tasks[name]["tuned"], "baseline": tasks[name]["baseline"],
                   "significance": stats or {}, "data": per_seed[0].get("data", {}).get(name, {})}
        verdicts[name] = judge(scratch, task_recipe(recipe, entry)).as_dict()
    result: dict[str, Any] = {
        "task": "multi-task", "tasks": tasks, "significance": tests, "verdict": verdicts,
        "multitask": per_seed[0]["multitask"], "model": per_seed[0]["model"],
        "seeds": {"values": seeds, "runs": [f"seed-{s}" for s in seeds]},
        "train": {"runtime_s": round(sum(m["train"]["runtime_s"] for m in per_seed), 3),
                  "total_params": per_seed[0]["train"]["total_params"]},
    }
    if all("comparison" in m for m in per_seed):
        result["comparison"] = _comparison(names, per_seed, dirs)
    return result


def run_multitask_seeds(recipe: Recipe, console: Console, run: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """``run`` (tailorlm.run.run) once per seed into seed-<s>/, then the top-level summary and report."""
    from tailorlm.multitask.report import write_report

    with group_run(recipe, console, "seeds") as opened:
        seeds = [recipe.training.seed + i for i in range(recipe.training.seeds)]
        per_seed, dirs = [], []
        for i, seed in enumerate(seeds, start=1):
            console.print(f"[bold]seed {seed}[/] ({i} of {len(seeds)})")
            single = seed_recipe(recipe, seed)
            per_seed.append(run(single, console))
            dirs.append(Path(single.output_dir))
        metrics = summarise(recipe, seeds, per_seed, dirs)
        opened.run_dir.write_json("metrics.json", metrics)
        write_report(opened.run_dir.path, metrics)
        opened.finished = {"seeds": seeds}
        return metrics
