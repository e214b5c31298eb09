"""A multi-task run as the list of its stages; the only place their order lives (as run.py is for one task)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console

from tailorlm.lifecycle import single_run
from tailorlm.multitask import outputs, stages
from tailorlm.recipe import Recipe
from tailorlm.stages import model as model_stages
from tailorlm.stages.context import Stage
from tailorlm.stages.runner import plan, run_stages

STAGES: list[Stage] = [
    Stage("prepare", stages.prepare),                       # every task's data through its own pipeline
    Stage("auto_data", stages.auto_data),                   # batch, epochs, warm-up, the step budget
    Stage("tokenize", stages.tokenize, writes=("data",)),   # each task's cached encoded splits
    Stage("build", stages.build),                           # one encoder (+ LoRA), a head per task
    Stage("auto_lr", stages.auto_learning_rate),
    Stage("auto", model_stages.record_auto, writes=("auto",)),
    Stage("baselines", stages.baselines),
    Stage("train", stages.train),
    Stage("evaluate", stages.evaluate),
    Stage("results", outputs.results, writes=outputs.SECTIONS),
    Stage("save", outputs.save),
    Stage("significance", outputs.significance, writes=("significance", "verdict")),
    Stage("comparison", outputs.compare_single, lambda c: c.recipe.multitask.comparison == "single_task",
          "multitask.comparison is single_task", writes=("comparison",)),
    Stage("write", outputs.write),
]


def run_multitask(recipe: Recipe, console: Console | None = None,
                  run_single: Callable[..., dict[str, Any]] | None = None,
                  extra_callbacks: list[Any] | None = None) -> dict[str, Any]:
    """One multi-task run of ``recipe`` (it has ``tasks:``) in its run directory; returns metrics.json.

    ``run_single``: the single-task run (``tailorlm.run.run``) that ``comparison: single_task`` calls per task;
    ``extra_callbacks`` join the Trainer's (tune's pruning, on ``eval_combined`` or ``eval_<task>_<metric>``)."""
    console = console or Console(stderr=True)
    with single_run(recipe, console) as opened:
        ctx = stages.MultiTaskContext(recipe, console, opened.run_dir, list(extra_callbacks or []),
                                      run_single=run_single)
        return run_stages(STAGES, ctx)


def dry_run(recipe: Recipe) -> list[dict[str, Any]]:
    from tailorlm.rundir import RunDir

    return plan(STAGES, stages.MultiTaskContext(recipe, Console(stderr=True, quiet=True), RunDir(recipe.output_dir)))
