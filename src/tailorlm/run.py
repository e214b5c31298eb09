"""One run, as the list of stages it is made of. This file is the only place the order lives.

Each stage is a function of one ``RunContext`` (stages/context.py), returning only its own sections of
metrics.json; the runner (stages/runner.py) times it and records the plan. ``tailor run --dry-run`` prints the
plan for a recipe. Seeds, k-fold folds, tune trials and data-curve runs are loops around ``run`` (launch.py).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tailorlm.lifecycle import single_run
from tailorlm.recipe import Recipe
from tailorlm.stages import adversarial, data, keep, model, outputs, training
from tailorlm.stages.context import Reshape, RunContext, Stage
from tailorlm.stages.runner import plan, run_stages

STAGES: list[Stage] = [
    Stage("prepare", data.prepare),                                      # load, clean, dedupe, split, report
    Stage("reshape", data.reshape, lambda c: c.reshape is not None,      # a k-fold fold or a data-curve subset
          "this is a k-fold fold or a data-curve run"),
    Stage("adapt", model.adapt, lambda c: c.recipe.adapt.pretrain, "adapt.pretrain is on",  # DAPT, before augment:
          writes=("adapt",)),                                            # mlm fills masks with the adapted head
    Stage("augment", data.augment, lambda c: c.recipe.augment.method != "none", "augment.method is not none",
          writes=("augment",)),
    Stage("counterfactual_augment", data.counterfactual_augment,               # swapped copies, training side only
          lambda c: c.recipe.fairness.mitigation == "counterfactual_augment",
          "fairness.mitigation is counterfactual_augment"),
    Stage("auto_data", data.auto_data),                                  # batch, epochs, warmup when auto
    Stage("unlabelled", data.unlabelled, lambda c: c.recipe.adapt.self_train, "adapt.self_train is on"),
    Stage("target", data.target, lambda c: bool(c.recipe.adapt.target_unlabeled), "adapt.target_unlabeled is set",
          writes=("adapt",)),
    Stage("tokenize", data.tokenize, writes=("data",)),                 # cached encoded splits
    Stage("weigh", data.weigh, lambda c: c.recipe.fairness.mitigation == "reweight",
          "fairness.mitigation is reweight"),
    Stage("domain_weights", data.domain_weights, lambda c: c.recipe.adapt.instance_weighting,
          "adapt.instance_weighting is on", writes=("adapt",)),
    Stage("build", model.build),                                         # the head (+ LoRA) on the body
    Stage("auto_lr", model.auto_learning_rate),
    Stage("lr_find", model.lr_find, lambda c: c.recipe.training.learning_rate == "find",
          "training.learning_rate is find", writes=("lr_find",)),
    Stage("auto", model.record_auto, writes=("auto",)),
    Stage("memory_plan", model.memory_plan),
    Stage("adversarial", adversarial.adversarial, lambda c: c.recipe.adapt.adversarial, "adapt.adversarial is on",
          writes=("adapt",)),
    Stage("baselines", training.baselines, main_only=True),
    Stage("train", training.train),
    Stage("calibrate", training.calibrate, lambda c: c.spec.has("calibration"), "the task calibrates (classification)",
          main_only=True),
    Stage("evaluate", training.evaluate, main_only=True),
    Stage("adversarial_report", adversarial.adversarial_report, lambda c: c.recipe.adapt.adversarial,
          "adapt.adversarial is on", writes=("adapt",), main_only=True),
    Stage("self_train", training.self_train, lambda c: c.recipe.adapt.self_train, "adapt.self_train is on",
          writes=("adapt",), main_only=True),
    Stage("keep_best", keep.keep_best, keep.wants_probe, "training.keep_best_of includes linear_probe",
          writes=("kept",), main_only=True),
    Stage("results", training.results, writes=training.RESULT_SECTIONS, main_only=True),
    Stage("audit", outputs.audit, lambda c: c.recipe.fairness.active, "fairness.group_column or "
          "fairness.counterfactual is set", writes=("fairness",), main_only=True),
    Stage("save", outputs.save, main_only=True),
    Stage("significance", outputs.significance, writes=("significance",), main_only=True),
    Stage("verdict", outputs.verdict, writes=("verdict",), main_only=True),
    Stage("write", outputs.write_metrics, main_only=True),
    Stage("report", outputs.report, main_only=True),
    Stage("card", outputs.card, main_only=True),
]


def run(recipe: Recipe, console: Console | None = None, extra_callbacks: list[Any] | None = None,
        reshape: Reshape | None = None, stages: list[Stage] | None = None) -> dict[str, Any]:
    """One run of ``recipe`` through ``stages`` (default STAGES) in its run directory; returns metrics.json.

    ``extra_callbacks`` join the Trainer's (tune's pruning); ``reshape`` replaces the prepared splits (a k-fold
    fold, a data-curve subset). A data-parallel worker runs the same stages, writing nothing of its own.
    """
    from tailorlm.tasks.defaults import fill_model_name
    from tailorlm.train.distributed import WorkerRunDir, is_main_process

    console = console or Console(stderr=True)
    if recipe.tasks:  # several tasks on one encoder: their own list of stages (multitask/run.py)
        from tailorlm.multitask.run import run_multitask

        return run_multitask(recipe, console, run_single=run, extra_callbacks=extra_callbacks)
    fill_model_name(recipe)
    if not is_main_process():  # data parallel: only rank 0 writes the run directory (train/distributed.py)
        worker_dir = WorkerRunDir(recipe.output_dir)
        try:
            ctx = RunContext(recipe, Console(stderr=True, quiet=True), worker_dir, list(extra_callbacks or []),
                             reshape, main_process=False)
            return run_stages(stages or STAGES, ctx)
        finally:
            worker_dir.cleanup()
    with single_run(recipe, console) as opened:
        ctx = RunContext(recipe, console, opened.run_dir, list(extra_callbacks or []), reshape)
        return run_stages(stages or STAGES, ctx)


def dry_run(recipe: Recipe, reshape: Reshape | None = None) -> list[dict[str, Any]]:
    """The stages a run of ``recipe`` would run and the condition of each, without touching any file."""
    from tailorlm.rundir import RunDir

    if recipe.tasks:  # a multi-task recipe runs multitask/run.py's stages
        from tailorlm.multitask.run import dry_run as multitask_dry_run

        return multitask_dry_run(recipe)
    ctx = RunContext(recipe, Console(stderr=True, quiet=True), RunDir(recipe.output_dir), reshape=reshape)
    return plan(STAGES, ctx)


def stages_through(name: str) -> list[Stage]:
    """The first stages of a run, up to and including ``name`` (``tailor lr-find`` stops after "build")."""
    names = [stage.name for stage in STAGES]
    return STAGES[: names.index(name) + 1]
