"""Output stages: the fairness audit, the saved model, the significance of the gain, the verdict, and the run
directory's files (metrics.json, the report, the model card)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tailorlm import __version__
from tailorlm.stages.context import RunContext

#: metrics.json's sections in reading order; a section a new stage adds comes after these
SECTION_ORDER = ("task", "labels", "model", "baseline", "tuned", "calibration", "validation", "kept", "train", "memory",
                 "errors", "samples", "data", "timings_s", "auto", "lr_find", "fairness", "adapt", "significance",
                 "verdict", "stages")


def audit(ctx: RunContext) -> dict[str, Any]:
    """Metrics by group, counterfactual swaps and the gate, on the kept model's test predictions (fairness/)."""
    from tailorlm.fairness.pipeline import audit_run

    fitted = ctx.need("fitted")
    result = audit_run(ctx.recipe, ctx.need("task"), fitted.model, ctx.tokenizer, ctx.need("data"), ctx.predictions,
                       ctx.need("settings"), ctx.mitigation)
    post = (result or {}).get("postprocess") or {}
    if post.get("rules") and ctx.kept is None:  # saved with the model it was fitted on; predict applies it by group
        fitted.meta["postprocess"] = {k: post[k] for k in ("method", "constraint", "positive_label", "group_column",
                                                           "rules", "decision")}
    return {"fairness": result} if result else {}


def save_model(model: Any, tokenizer: Any, run_dir: Any, recipe: Any, resolved: Any, meta: dict[str, Any]) -> None:
    """Write model/ atomically: weights (safetensors) or the LoRA adapter, tokenizer, config and tailor metadata."""
    from tailorlm.data.clean import CLEAN_META_KEY
    from tailorlm.models.registry import TAILOR_META, write_model_meta
    from tailorlm.rundir import replace_dir
    from tailorlm.serve.export import export_merged

    tmp = run_dir.path / ".model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    is_lora = recipe.model.peft.method == "lora"
    model.save_pretrained(tmp, safe_serialization=True)
    if is_lora:
        model.get_base_model().config.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    write_model_meta(
        tmp,
        meta | {
            "base_model": portable_base(resolved.source, run_dir),
            CLEAN_META_KEY: recipe.data.clean.model_dump(mode="json"),  # inputs are cleaned the same way later
            "base_model_name": resolved.name,
            "peft": recipe.model.peft.method,
            "tailorlm_version": __version__,
        },
    )
    replace_dir(tmp, run_dir.model, TAILOR_META)
    if is_lora and recipe.model.peft.merge_on_save:
        export_merged(run_dir.model, run_dir.path / "model_merged")


def portable_base(source: str, run_dir: Any) -> str:
    """A base model inside the run directory (``adapted/``) is written relative to ``model/`` ("../adapted"), so
    a LoRA adapter still finds it after the run directory is moved or copied; anything else stays as resolved."""
    path = Path(source)
    if path.is_absolute() and path.resolve().is_relative_to(run_dir.path.resolve()):
        return os.path.relpath(path.resolve(), run_dir.model.resolve())
    return source


def save(ctx: RunContext) -> None:
    """The kept model into model/; the checkpoints it was chosen from are not needed any more."""
    fitted = ctx.need("fitted")
    if ctx.kept is not None:  # training.keep_best_of chose the linear probe: the pretrained encoder + its head
        recipe = ctx.recipe.model_copy(deep=True)
        recipe.model.peft.method = "none"
        save_model(ctx.kept.model, ctx.tokenizer, ctx.run_dir, recipe, ctx.need("resolved"), ctx.kept.meta)
    else:
        save_model(fitted.model, ctx.tokenizer, ctx.run_dir, ctx.recipe, ctx.need("body"), fitted.meta)
    shutil.rmtree(ctx.run_dir.checkpoints, ignore_errors=True)


def significance(ctx: RunContext) -> dict[str, Any]:
    """predictions.jsonl, the bootstrap CI of the main metric and the paired test against the best reference."""
    from tailorlm.evaluate.predictions import record_predictions

    scratch = dict(ctx.metrics)
    record_predictions(ctx.run_dir, scratch, ctx.predictions)
    return {"significance": scratch["significance"]} if "significance" in scratch else {}


def verdict(ctx: RunContext) -> dict[str, Any]:
    """Tuned vs the best reference baseline, in one sentence (evaluate/verdict.py)."""
    from tailorlm.evaluate.verdict import judge

    return {"verdict": judge(ctx.metrics, ctx.recipe).as_dict()}


def ordered(metrics: dict[str, Any]) -> dict[str, Any]:
    rank = {key: i for i, key in enumerate(SECTION_ORDER)}
    return dict(sorted(metrics.items(), key=lambda item: rank.get(item[0], len(rank))))


def write_metrics(ctx: RunContext) -> None:
    """metrics.json (the sections so far, the stage timings and the plan) and the Trainer's log history."""
    ctx.metrics["timings_s"] = dict(ctx.timings)
    ctx.metrics["stages"] = ctx.plan  # the seconds of each are in timings_s
    ctx.metrics = ordered(ctx.metrics)
    ctx.run_dir.write_json("metrics.json", ctx.metrics)
    ctx.run_dir.write_json("log_history.json", ctx.need("fitted").outcome.log_history)


def report(ctx: RunContext) -> None:
    from tailorlm.report import render_report

    render_report(ctx.run_dir.path)


def card(ctx: RunContext) -> None:
    """model/README.md: needs metrics.json, so it comes last."""
    from tailorlm.serve.card import write_model_card

    write_model_card(ctx.run_dir.path)
