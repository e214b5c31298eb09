"""Which loop a command runs around the one run (run.py): a time-budgeted search, N seeds, k folds, a data
curve, or one run; and the commands that run only the first stages (``tailor lr-find``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from tailorlm.recipe import Recipe


def run_recipe(recipe: Recipe, console: Console, started: float | None = None) -> dict[str, Any]:
    """``tailor run``: the loop the recipe asks for; returns the top-level metrics.json.

    ``started``: when the command began (``--budget`` counts its imports too). A finished run in ``output_dir`` is
    refused unless ``overwrite`` (safety.refuse_finished_run).
    """
    from tailorlm.safety import refuse_finished_run

    refuse_finished_run(recipe)
    if recipe.search.budget:  # search within the budget, then the winner's run (tune/budget.py)
        from tailorlm.tune.budget import run_with_budget

        return run_with_budget(recipe, console, started=started)
    if recipe.tasks and recipe.training.seeds > 1:  # N joint multi-task runs, summarised per task (multitask/)
        from tailorlm.multitask.seeds import run_multitask_seeds
        from tailorlm.run import run

        return run_multitask_seeds(recipe, console, run)
    if recipe.training.seeds > 1:  # N seeds into output_dir/seed-<s>/, mean ± std and CI (evaluate/seeds.py)
        from tailorlm.evaluate.seeds import run_seeds

        return run_seeds(recipe, console)
    return run_once(recipe, console)


def loop_of(recipe: Recipe) -> str:
    """The loop ``run_recipe`` will run, in words (``tailor run --dry-run``)."""
    if recipe.search.budget:
        return f"a search within {recipe.search.budget}, then the winner's run"
    parts = [f"{recipe.training.seeds} seeds"] if recipe.training.seeds > 1 else []
    if recipe.tasks:  # the recipe's top-level task is not used: each task has its own (multitask/)
        shown = ", ".join(f"{t.name} ({t.task})" for t in recipe.tasks)
        return ", ".join([*parts, f"one multi-task run of {len(recipe.tasks)} tasks on one encoder: {shown}"])
    parts += [f"{recipe.validation.kfold} folds"] if recipe.validation.kfold else []
    parts += ["a data curve (25% and 50% runs after the full one)"] if recipe.report.data_curve else []
    parts += ["with and without augmentation (augment.gate)"] if recipe.augment.method != "none" and \
        recipe.augment.gate else []
    return ", ".join(parts) if parts else "one run"


def run_once(recipe: Recipe, console: Console, extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """One seed: k runs when ``validation.kfold`` is set (tune/cv.py), else one run, with the data curve's smaller
    runs after it when ``report.data_curve`` asks (evaluate/data_curve.py), or the augmented and the plain run
    when ``augment.gate`` asks (augment/gate.py)."""
    from tailorlm.evaluate import data_curve
    from tailorlm.run import run

    curve_base = data_curve.start(recipe) if recipe.report.data_curve else None  # checked before any training
    if recipe.validation.kfold:
        from tailorlm.tune.cv import run_cv

        return run_cv(recipe, console, extra_callbacks=extra_callbacks)
    if recipe.augment.method != "none" and recipe.augment.gate:  # with and without, keep the better (augment/)
        from tailorlm.augment.gate import run_gated

        return run_gated(recipe, console, extra_callbacks)
    metrics = run(recipe, console, extra_callbacks)
    if curve_base is not None:  # 25% and 50% runs, power-law extrapolation
        metrics = data_curve.run_data_curve(curve_base, recipe, metrics, console)
    return metrics


def lr_find_command(recipe: Recipe, console: Console) -> tuple[Any, Path]:
    """``tailor lr-find``: the run's stages up to the built model, then the range test, written to
    ``output_dir/lr-find/`` (``lr_find.json``, ``lr_find.svg`` and the data report) and nowhere else, so an earlier
    run in ``output_dir`` keeps every file. Returns (result, folder)."""
    from tailorlm.report.charts import lr_find_chart
    from tailorlm.run import stages_through
    from tailorlm.rundir import RunDir
    from tailorlm.safety import check_output_dir
    from tailorlm.stages.context import RunContext
    from tailorlm.stages.runner import run_stages
    from tailorlm.train.lr_find import find_learning_rate

    check_output_dir(recipe)  # no writing over data, /, or home
    run_dir = RunDir.create(Path(recipe.output_dir) / "lr-find")
    ctx = RunContext(recipe, console, run_dir)
    run_stages(stages_through("build"), ctx)
    task, data = ctx.need("task"), ctx.need("data")
    found = find_learning_rate(task, ctx.need("model"), ctx.tokenizer, ctx.need("encoded"), recipe, console)
    found.settings |= {"model": ctx.need("resolved").name, "task": task.name, "train_rows": len(data.train),
                       "peft": recipe.model.peft.method}
    run_dir.write_json("lr_find.json", found.as_dict())
    run_dir.write_text("lr_find.svg", lr_find_chart(found.lrs, found.losses, found.smoothed, found.suggestion,
                                                    found.min_lr))
    return found, run_dir.path
