"""Training stages: the baselines measured before tuning, fine-tuning, calibration, the test evaluation,
self-training, and the results section that describes the model the run keeps.

``fit_model``, ``calibrate_model`` and ``evaluate_model`` are the one way a model is trained and scored: the
stages call them for the run's model and self-training calls them for its student.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tailorlm.recipe import Recipe
from tailorlm.stages.context import Fitted, RunContext
from tailorlm.stages.model import build_task_model

#: what a task's ``evaluate`` may return besides ``metrics`` (and ``predictions``, which go to predictions.jsonl)
EVALUATION_EXTRAS = ("errors", "samples")
RESULT_SECTIONS = ("task", "labels", "model", "baseline", "tuned", "calibration", "validation", "train", "memory",
                   *EVALUATION_EXTRAS)


def baselines(ctx: RunContext) -> None:
    """What the model scores before tuning (and the reference systems a careful user would try)."""
    from tailorlm.progress import progress_bar

    encoded = ctx.need("encoded")
    with progress_bar(ctx.console, "baselines"):  # a bar on a terminal: embedding train and test takes a while
        ctx.baselines = ctx.need("task").baselines(ctx.recipe, ctx.need("data"), ctx.need("resolved"),
                                                   ctx.tokenizer, encoded.max_length)
    probe = ctx.baselines.get("linear_probe")
    ctx.probe_head = probe.pop("head", None) if isinstance(probe, dict) else None  # training.keep_best_of
    for name, result in ctx.baselines.items():
        if result and "f1_macro" in result:
            ctx.console.print(f"baseline {name.replace('_', ' ')}: accuracy {result['accuracy']:.4f} · "
                              f"macro-F1 {result['f1_macro']:.4f}")


def fit_model(ctx: RunContext, model: Any, encoded: Any, data: Any, recipe: Recipe, checkpoints: Path,
              log_path: Path, resume_from: Path | None = None) -> Any:
    """Train ``model`` in place with the Trainer (train/trainer.py); the best validation checkpoint is kept."""
    from tailorlm.train.trainer import fit

    return fit(ctx.need("task"), model, ctx.tokenizer, encoded, data, recipe, checkpoints, log_path, ctx.console,
               ctx.extra_callbacks, resume_from=resume_from, loss_terms=ctx.loss_terms)


def train(ctx: RunContext) -> None:
    from tailorlm.models.peft import count_parameters
    from tailorlm.train.distributed import wait_for_all

    ctx.parameter_counts = count_parameters(ctx.need("model"))
    trainable, total = ctx.parameter_counts
    ctx.console.print(f"fine-tuning {trainable:,} of {total:,} parameters ({ctx.recipe.model.peft.method})")
    ctx.outcome = fit_model(ctx, ctx.model, ctx.need("encoded"), ctx.need("data"), ctx.recipe, ctx.run_dir.checkpoints,
                            ctx.run_dir.log_history, resume_from=ctx.run_dir.resume_from)
    wait_for_all()


def evaluation_settings(ctx: RunContext) -> Any:
    """How the test split (and a student's) is scored; decided once, after training."""
    from tailorlm.tasks.base import EvalSettings

    if ctx.settings is None:
        ctx.settings = EvalSettings(max_length=ctx.need("encoded").max_length,
                                    batch_size=ctx.recipe.training.eval_batch, top_errors=ctx.recipe.report.top_errors)
    return ctx.settings


def calibrate_model(ctx: RunContext, model: Any) -> dict[str, Any]:
    """What makes the model's scores honest (classification: a softmax temperature): ``{"meta", "report"}``."""
    return ctx.need("task").calibrate(model, ctx.tokenizer, ctx.need("data"), ctx.recipe, evaluation_settings(ctx))


def evaluate_model(ctx: RunContext, model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    from tailorlm.progress import progress_bar

    with progress_bar(ctx.console, "test split"):
        return ctx.need("task").evaluate(model, ctx.tokenizer, ctx.need("data").test, meta, evaluation_settings(ctx))


def calibrate(ctx: RunContext) -> None:
    ctx.calibration = calibrate_model(ctx, ctx.need("model"))


def evaluate(ctx: RunContext) -> None:
    """The test split, scored by the model with the metadata it is saved with (labels, temperature, ...)."""
    task = ctx.need("task")
    meta = task.model_meta(ctx.need("data")) | {"task": task.name, "max_length": ctx.need("encoded").max_length}
    meta |= getattr(ctx.model, "tailor_meta", {})  # a head that is not transformers' own (regression's bi-encoder)
    meta |= ctx.calibration.get("meta", {})
    ctx.fitted = Fitted(ctx.model, ctx.need("outcome"), ctx.calibration, evaluate_model(ctx, ctx.model, meta), meta)


def train_student(ctx: RunContext, pseudo: Any, teacher: Fitted) -> Fitted:
    """Self-training's student: the teacher's recipe and starting point on train + pseudo-labelled rows, through
    the same build, fit, calibration and test evaluation as the teacher."""
    import copy
    import shutil

    import pandas as pd

    task, data, settings = ctx.need("task"), ctx.need("data"), evaluation_settings(ctx)
    student_data = copy.copy(data)
    marked = pseudo[["text", "label", "source", "row", "pseudo"]]
    student_data.train = pd.concat([data.train.assign(pseudo=False), marked], ignore_index=True)
    student_recipe = ctx.recipe.model_copy(deep=True)
    student_recipe.training.max_length = settings.max_length  # the teacher's, not re-derived from pseudo texts
    encoded = task.encode(student_recipe, student_data, ctx.tokenizer)
    task.after_encode(student_recipe, student_data, ctx.tokenizer, encoded)
    model = build_task_model(ctx, data)
    scratch, log = ctx.run_dir.path / ".self-train-checkpoints", ctx.run_dir.path / ".self-train-log.json"
    try:
        outcome = fit_model(ctx, model, encoded, student_data, student_recipe, scratch, log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        log.unlink(missing_ok=True)
    calibration = calibrate_model(ctx, model) if ctx.spec.has("calibration") else {}
    meta = {k: v for k, v in teacher.meta.items() if k != "temperature"} | calibration.get("meta", {})
    return Fitted(model, outcome, calibration, evaluate_model(ctx, model, meta), meta)


def self_train(ctx: RunContext) -> dict[str, Any]:
    """adapt.self_train: pseudo-label, retrain; the student replaces the teacher only if not worse (adapt/)."""
    from tailorlm.adapt.self_train import Context
    from tailorlm.adapt.self_train import self_train as pseudo_label_rounds

    rounds = Context(ctx.tokenizer, ctx.need("data"), evaluation_settings(ctx), ctx.run_dir,
                     train_student=lambda pseudo, teacher: train_student(ctx, pseudo, teacher))
    outcome = pseudo_label_rounds(ctx.need("task"), ctx.recipe, ctx.need("fitted"), rounds, ctx.need("unlabelled"),
                                  ctx.console)
    ctx.fitted = outcome.kept
    return {"adapt": {"self_training": outcome.record}}


def results(ctx: RunContext) -> dict[str, Any]:
    """The kept model's sections: its test metrics beside the baselines, validation, training and memory facts."""
    from tailorlm.evaluate.floors import mark_floors
    from tailorlm.evaluate.predictions import pop_predictions
    from tailorlm.train.trainer import best_validation

    fitted, task, encoded = ctx.need("fitted"), ctx.need("task"), ctx.need("encoded")
    ctx.predictions = pop_predictions(fitted.evaluation, ctx.baselines)  # per-example rows: predictions.jsonl
    mark_floors(ctx.baselines, task.name)  # lower bounds, never the bar to clear (evaluate/floors.py)
    resolved, meta = ctx.need("resolved"), fitted.meta
    sections: dict[str, Any] = {
        "task": task.name,
        **({"labels": meta["labels"]} if "labels" in meta else {}),
        "model": {"name": resolved.name, "path": str(ctx.run_dir.model), "base": resolved.source,
                  "peft": ctx.recipe.model.peft.method, "max_length": encoded.max_length},
        "baseline": ctx.baselines,
        "tuned": fitted.evaluation["metrics"],
        **({"calibration": fitted.calibration["report"]} if fitted.calibration.get("report") else {}),
        "validation": best_validation(fitted.outcome.log_history, fitted.outcome.best_step),
        "train": train_section(fitted.outcome, ctx.parameter_counts),
        "memory": fitted.outcome.machine_memory or {},  # free memory seen this time: a reading, like the timings
    }
    return sections | {k: v for k, v in fitted.evaluation.items() if k != "metrics"}


def train_section(outcome: Any, parameter_counts: tuple[int, int]) -> dict[str, Any]:
    trainable, total = parameter_counts
    return {
        "runtime_s": round(outcome.runtime_s, 3),
        "samples_per_s": round(outcome.samples_per_s, 3),
        "batch_size": outcome.batch_size,  # per device, as trained (training.auto_batch_size may shrink it)
        "global_batch": outcome.global_batch,
        "tokens_per_s": round(outcome.tokens_seen / outcome.runtime_s, 1) if outcome.runtime_s else 0.0,
        "trainable_params": trainable,
        "total_params": total,
        "epochs_run": round(outcome.epochs_run, 3),
        "global_step": outcome.global_step,
        "best_step": outcome.best_step,
        "stopped_early": outcome.stopped_early,
        **(outcome.memory or {}),  # micro_batch, memory_accumulation, ... (train/memory_fit.py)
    }
