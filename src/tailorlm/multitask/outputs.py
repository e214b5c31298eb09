"""The end of a multi-task run: per-task results, the saved multi-head model, per-task significance and verdict,
the optional single-task comparison, metrics.json and the report."""

from __future__ import annotations

import shutil
from typing import Any

from tailorlm import __version__
from tailorlm.multitask.stages import MultiTaskContext, selection
from tailorlm.multitask.units import TaskUnit, task_recipe

SECTIONS = ("task", "tasks", "model", "multitask", "train", "validation")


def _history(log_history: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Per evaluation, the logged values whose key starts with ``eval_<prefix>`` (gradient cosines, weights)."""
    out = []
    for entry in log_history:
        values = {k.removeprefix(f"eval_{prefix}"): v for k, v in entry.items() if k.startswith(f"eval_{prefix}")}
        if values:
            out.append({"step": entry.get("step"), **values})
    return out


def task_section(unit: TaskUnit, validation: dict[str, Any]) -> dict[str, Any]:
    prefix = f"{unit.name}_"
    return {"task": unit.task.name, **({"labels": unit.data.labels} if unit.data.labels else {}),
            "main_metric": unit.main_metric, "loss_weight": unit.entry.loss_weight,
            "baseline": unit.baselines, "tuned": unit.evaluation["metrics"],
            "validation": {k.removeprefix(prefix): v for k, v in validation.items() if k.startswith(prefix)},
            "errors": unit.evaluation.get("errors", [])}


def results(ctx: MultiTaskContext) -> dict[str, Any]:
    """metrics.json's sections: every task's test metrics beside its baselines, and how the tasks were trained."""
    from tailorlm.stages.training import train_section
    from tailorlm.train.trainer import best_validation

    outcome, model = ctx.need("outcome"), ctx.need("model")
    validation = best_validation(outcome.log_history, outcome.best_step)
    metric, greater = selection(ctx.recipe, ctx.units)
    mt = ctx.recipe.multitask
    record: dict[str, Any] = {
        "tasks": [u.name for u in ctx.units], "sampling": ctx.need("sampling").record(ctx.recipe.training.seed),
        "balance": mt.balance, "select": {"metric": metric, "greater_is_better": greater, "by": mt.select},
        "gradient_cosines": _history(outcome.log_history, "grad_cosine_"),
        "test_texts_trained_by_other_tasks": ctx.overlap,
    }
    if model.uncertainty is not None:
        record["uncertainty_weights"] = dict(zip(model.names, model.uncertainty.weights(), strict=True))
        record["uncertainty_history"] = _history(outcome.log_history, "weight_")
    resolved = ctx.need("resolved")
    return {
        "task": "multi-task",
        "tasks": {u.name: task_section(u, validation) for u in ctx.units},
        "model": {"name": resolved.name, "path": str(ctx.run_dir.model), "base": resolved.source,
                  "peft": ctx.recipe.model.peft.method, "encoders": 1, "heads": len(ctx.units)},
        "multitask": record,
        "train": train_section(outcome, ctx.parameter_counts),
        "validation": validation,  # the kept checkpoint's: combined, loss, <task>_<metric> (tune's objective)
    }


def save(ctx: MultiTaskContext) -> None:
    """model/: the encoder once, a head per task, label maps and per-task settings (multitask/model.py)."""
    from tailorlm.data.clean import CLEAN_META_KEY
    from tailorlm.models.registry import TAILOR_META
    from tailorlm.rundir import replace_dir

    tmp = ctx.run_dir.path / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    resolved = ctx.need("resolved")
    meta = {"task": "multi-task", "base_model": resolved.source, "base_model_name": resolved.name,
            "peft": ctx.recipe.model.peft.method, "tailorlm_version": __version__}
    tasks = {u.name: {"task": u.task.name,
                      "meta": u.meta | {CLEAN_META_KEY: u.recipe.data.clean.model_dump(mode="json")}}
             for u in ctx.units}
    save_multitask_model(ctx, tmp, meta, tasks)
    replace_dir(tmp, ctx.run_dir.model, TAILOR_META)
    shutil.rmtree(ctx.run_dir.checkpoints, ignore_errors=True)


def save_multitask_model(ctx: MultiTaskContext, folder: Any, meta: dict[str, Any], tasks: dict[str, Any]) -> None:
    from tailorlm.multitask.model import save_multitask

    save_multitask(ctx.need("model"), ctx.tokenizer, folder, meta, tasks)


def significance(ctx: MultiTaskContext) -> dict[str, Any]:
    """Per task: predictions.jsonl in tasks/<name>/, the bootstrap CI and paired test, the verdict."""
    from tailorlm.evaluate.predictions import record_predictions
    from tailorlm.evaluate.verdict import judge

    tests, verdicts = {}, {}
    for unit in ctx.units:
        scratch = {"task": unit.task.name, "labels": unit.data.labels, "baseline": unit.baselines,
                   "tuned": unit.evaluation["metrics"], "data": {"test": len(unit.data.test),
                                                                 "validation": len(unit.data.validation)}}
        record_predictions(ctx.unit_dir(unit), scratch, unit.predictions)
        if "significance" in scratch:
            tests[unit.name] = scratch["significance"]
        verdicts[unit.name] = judge(scratch, unit.recipe).as_dict()
        ctx.console.print(f"{unit.name}: {verdicts[unit.name]['sentence']}", markup=False)
    return {"significance": tests, "verdict": verdicts}


def compare_single(ctx: MultiTaskContext) -> dict[str, Any]:
    """comparison: single_task: each task alone (same model, settings and seed) in single/<name>/, side by side."""
    from tailorlm.evaluate.predictions import FILE, read_jsonl
    from tailorlm.evaluate.stats import paired_test, same_test_set
    from tailorlm.metric_names import greater_is_better

    run = ctx.need("run_single")  # tailorlm.run.run, handed in by launch.py (run.py imports this package)
    rows: dict[str, Any] = {}
    single_train_s, single_params = 0.0, 0
    batches = ctx.need("sampling").record(ctx.recipe.training.seed)["batches"]
    for unit, budget in zip(ctx.units, batches, strict=True):
        single = task_recipe(ctx.recipe, unit.entry, ctx.run_dir.path / "single" / unit.name)
        single.baseline.zero_shot = single.baseline.linear_probe = False  # measured once, in the multi-task run
        # the same budget per task: as many batches of its rows as the joint run gave it
        per_epoch = -(-len(unit.data.train) // int(single.training.batch_size))
        single.training.epochs = max(budget, 1) / per_epoch
        metrics = run(single, ctx.console)
        single_train_s += metrics["train"]["runtime_s"]
        single_params += metrics["train"]["total_params"]
        metric = unit.main_metric
        entry = {"metric": metric, "greater_is_better": greater_is_better(metric), "batches": budget,
                 "multi_task": unit.evaluation["metrics"].get(metric), "single_task": metrics["tuned"].get(metric)}
        single_rows = read_jsonl(ctx.run_dir.path / "single" / unit.name / FILE)
        if unit.predictions and same_test_set(unit.predictions, single_rows):
            test_metric = (ctx.metrics.get("significance", {}).get(unit.name) or {}).get("metric", metric)
            entry["paired_test"] = paired_test([unit.predictions], [single_rows], test_metric, unit.data.labels)
        rows[unit.name] = entry
    outcome = ctx.need("outcome")
    return {"comparison": {"tasks": rows,
                           "train_time_s": {"multi_task": round(outcome.runtime_s, 3),
                                            "single_tasks_sum": round(single_train_s, 3)},
                           "parameters_served": {"multi_task": ctx.parameter_counts[1],
                                                 "single_tasks_sum": single_params}}}


def write(ctx: MultiTaskContext) -> None:
    from tailorlm.multitask.report import write_report

    ctx.metrics["timings_s"] = dict(ctx.timings)
    ctx.metrics["stages"] = ctx.plan
    ctx.run_dir.write_json("metrics.json", ctx.metrics)
    ctx.run_dir.write_json("log_history.json", ctx.need("outcome").log_history)
    write_report(ctx.run_dir.path, ctx.metrics)
