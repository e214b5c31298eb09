"""The pipeline: recipe → data → baseline → train → evaluate → run directory.

Every command is one path through this flow: ``prepare`` stops after the data, ``run`` goes all the way, ``eval``,
``predict`` and ``serve`` start from a saved model. The task object supplies everything task-specific.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from transformers import set_seed

from tailorlm import __version__
from tailorlm.adapt import adapt_model
from tailorlm.adapt.self_train import Context as SelfTrainContext
from tailorlm.adapt.self_train import Fitted, read_unlabelled, self_train
from tailorlm.data import write_rejects
from tailorlm.data.clean import CLEAN_META_KEY
from tailorlm.data.pipeline import PreparedData
from tailorlm.data.token_cache import encode_with_cache
from tailorlm.errors import RecipeError
from tailorlm.evaluate import data_curve
from tailorlm.evaluate.floors import mark_floors
from tailorlm.evaluate.predictions import pop_predictions, record_predictions
from tailorlm.evaluate.verdict import judge
from tailorlm.fairness.pipeline import apply_mitigation, audit_run
from tailorlm.models.loading import load_tokenizer
from tailorlm.models.peft import apply_lora, count_parameters
from tailorlm.models.registry import TAILOR_META, ResolvedModel, resolve_model, write_model_meta
from tailorlm.provenance import data_files
from tailorlm.recipe import Recipe, dump_recipe
from tailorlm.rundir import RunDir, replace_dir
from tailorlm.safety import check_export_dir, check_output_dir, sigterm_as_interrupt
from tailorlm.tasks import Task, get_task
from tailorlm.tasks.base import EvalSettings
from tailorlm.track import start_tracking
from tailorlm.train import auto, lr_find, resume
from tailorlm.train.distributed import WorkerRunDir, is_main_process, wait_for_all
from tailorlm.train.resume import AUTO_FILE


@dataclass
class Timer:
    """Wall time per stage, reported in metrics.json so users see where a run's time goes."""

    stages: dict[str, float] = field(default_factory=dict)

    def time(self, name: str, fn: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            return fn()
        finally:
            self.stages[name] = round(time.perf_counter() - started, 3)


def token_counter(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]

    return count


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_info() -> dict[str, Any]:
    """Library versions, machine and code revision: what a reader needs to reproduce the numbers."""
    import torch
    import transformers

    versions = {"tailorlm": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
    for name in ("peft", "datasets", "accelerate", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            continue
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "git_revision": _git_revision(),
        "command": " ".join(sys.argv),
    }


def fill_model_name(recipe: Recipe, task: Task) -> None:
    """``model.name`` from the task's default; a task whose ``default_model`` is None needs the recipe to name one."""
    if recipe.model.name is None:
        if task.default_model is None:
            hint = getattr(task, "model_hint", None) or f"task '{task.name}' has no default model; set model.name"
            raise RecipeError(hint)
        recipe.model.name = task.default_model


def prepare(recipe: Recipe, console: Console, run_dir: RunDir | None = None,
            ) -> tuple[PreparedData, Any, ResolvedModel, Task]:
    """Resolve the model's tokenizer, then load, clean and split the data; write the data report and rejects."""
    if run_dir is None:  # `tailor prepare`: the same output_dir guards as a run (run() checked already)
        check_output_dir(recipe)
        run_dir = RunDir.create(recipe.output_dir)
    task = get_task(recipe.task)
    fill_model_name(recipe, task)
    resolved = resolve_model(recipe.model.name, allow_pickle=recipe.model.allow_pickle)
    tokenizer = load_tokenizer(resolved, recipe.model)
    data = task.prepare_data(recipe, token_counter(tokenizer))
    run_dir.write_json("data_report.json", data.report)
    write_rejects(run_dir.rejects, data.rejects)
    console.print(
        f"data: train {len(data.train)} · validation {len(data.validation)} · test {len(data.test)} rows; "
        f"{len(data.rejects)} rejected (see {run_dir.rejects})"
    )
    return data, tokenizer, resolved, task


def save_model(model: Any, tokenizer: Any, run_dir: RunDir, recipe: Recipe, resolved: ResolvedModel,
               meta: dict[str, Any]) -> None:
    """Write model/ atomically: weights (safetensors) or the LoRA adapter, tokenizer, config and tailor metadata."""
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
            "base_model": _portable_base(resolved.source, run_dir),
            CLEAN_META_KEY: recipe.data.clean.model_dump(mode="json"),  # inputs are cleaned the same way later
            "base_model_name": resolved.name,
            "peft": recipe.model.peft.method,
            "tailorlm_version": __version__,
        },
    )
    replace_dir(tmp, run_dir.model, TAILOR_META)
    if is_lora and recipe.model.peft.merge_on_save:
        export_merged(run_dir.model, run_dir.path / "model_merged")


def _portable_base(source: str, run_dir: RunDir) -> str:
    """A base model inside the run directory (``adapted/``) is written relative to ``model/`` ("../adapted"), so
    a LoRA adapter still finds it after the run directory is moved or copied; anything else stays as resolved."""
    path = Path(source)
    if path.is_absolute() and path.resolve().is_relative_to(run_dir.path.resolve()):
        return os.path.relpath(path.resolve(), run_dir.model.resolve())
    return source


def export_merged(adapter_dir: Path, out: Path) -> Path:
    """Fold a LoRA adapter into its base weights: one plain model folder, no peft needed to serve it."""
    from tailorlm.models.saved import load_saved_model

    check_export_dir(out, adapter_dir)  # before the minutes of merging: never onto a folder of the user's
    loaded = load_saved_model(adapter_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    loaded.model.save_pretrained(tmp, safe_serialization=True)
    loaded.tokenizer.save_pretrained(tmp)
    meta = dict(loaded.meta) | {"peft": "none", "merged_from_adapter": str(adapter_dir)}
    write_model_meta(tmp, meta)
    replace_dir(tmp, out, TAILOR_META)
    return out


def run(recipe: Recipe, console: Console | None = None, extra_callbacks: list[Any] | None = None,
        adjust_data: Callable[[Any], Any] | None = None) -> dict[str, Any]:
    """Prepare, measure the baselines, fine-tune, evaluate, save and report. Returns metrics.json's content.

    ``extra_callbacks`` join the Trainer's (tune's pruning); ``adjust_data`` replaces the prepared splits (a
    k-fold fold). With ``validation.kfold`` set, the run is k runs, one per fold (tune/cv.py).
    """
    console = console or Console(stderr=True)
    curve_base = data_curve.start(recipe) if recipe.report.data_curve and adjust_data is None else None
    if recipe.validation.kfold:
        from tailorlm.tune.cv import run_cv

        return run_cv(recipe, console, extra_callbacks=extra_callbacks)
    fill_model_name(recipe, get_task(recipe.task))
    if not is_main_process():  # data parallel: only rank 0 writes the run directory (train/distributed.py)
        return _run_worker(recipe, extra_callbacks, adjust_data)
    tracker = start_tracking(recipe)  # tracking.mlflow: MLflow installed and tracking.uri usable, or stop now
    check_output_dir(recipe)  # no writing over data, /, or home (safety.py)
    run_dir = RunDir.create(recipe.output_dir)
    run_dir.resume_from = resume.begin(recipe, run_dir, console)  # before the files below are rewritten
    run_dir.write_text("recipe.resolved.yaml", dump_recipe(recipe))
    run_dir.write_json("run_info.json", run_info() | {"data_files": data_files(recipe)})
    run_dir.set_status("running", pid=os.getpid(), resumed_from=str(run_dir.resume_from or "") or None)
    timer = Timer()
    try:
        with sigterm_as_interrupt():  # SIGTERM -> status "interrupted", checkpoints kept for --resume
            metrics = _run_stages(recipe, console, run_dir, timer, extra_callbacks, adjust_data)
    except BaseException as exc:
        resume.record_failure(run_dir, exc)
        tracker.failed(run_dir.path, exc, console)  # a failed run is logged too, with its error
        raise
    run_dir.set_status("finished", **({"resumed_from": str(run_dir.resume_from)} if run_dir.resume_from else {}))
    if curve_base is not None:  # report.data_curve: 25% and 50% runs, power-law extrapolation (evaluate/)
        metrics = data_curve.run_data_curve(curve_base, recipe, metrics, console)
    tracker.finished(run_dir.path, console)  # after metrics.json and the report: MLflow gets the final files
    return metrics


def _run_worker(recipe: Recipe, extra_callbacks: list[Any] | None, adjust_data: Callable[[Any], Any] | None,
                ) -> dict[str, Any]:
    """A non-main rank: the same stages, silent, writing nothing to the run directory but shared checkpoints."""
    run_dir = WorkerRunDir(recipe.output_dir)
    try:
        return _run_stages(recipe, Console(stderr=True, quiet=True), run_dir, Timer(), extra_callbacks, adjust_data)
    finally:
        run_dir.cleanup()


def _run_stages(recipe: Recipe, console: Console, run_dir: RunDir, timer: Timer,
                extra_callbacks: list[Any] | None = None, adjust_data: Callable[[Any], Any] | None = None,
                ) -> dict[str, Any]:
    from tailorlm.report import render_report
    from tailorlm.serve.card import write_model_card
    from tailorlm.train.trainer import fit, plan_batch

    started = time.perf_counter()
    data, tokenizer, resolved, task = timer.time("prepare", lambda: prepare(recipe, console, run_dir))
    if adjust_data is not None:
        data = adjust_data(data)
    chosen = auto.resolve_data_dependent(recipe, len(data.train))  # training.*: auto -> values (train/auto.py)
    unlabelled = read_unlabelled(recipe, data) if recipe.adapt.self_train else None  # a bad file fails before training
    encoded, cache_status = timer.time("tokenize", lambda: encode_with_cache(task, recipe, data, tokenizer))
    mitigation = apply_mitigation(recipe, data, encoded)  # fairness.mitigation: reweight -> a weight column
    cached = " (tokenised splits from the cache)" if cache_status == "hit" else ""
    console.print(f"model: {resolved.name} · max_length {encoded.max_length} tokens{cached}")
    # Build (and LoRA-wrap) the model before the baselines, so a bad model setting fails in seconds.
    # Seed first: a new head's initial weights must be the same for the same recipe.
    # adapt.pretrain: the body keeps pretraining on domain text first (adapt/); baselines keep the original
    body, adapted = timer.time("adapt", lambda: adapt_model(recipe, resolved, tokenizer, data, run_dir, console)) \
        if recipe.adapt.pretrain else (resolved, {})
    set_seed(recipe.training.seed)
    model = task.build_model(body, recipe, data)
    if recipe.model.peft.method == "lora":
        model = apply_lora(model, recipe.model.peft, task.peft_task_type)
    chosen |= auto.resolve_learning_rate(recipe, task.name, auto.body_parameters(model))
    lr_found = None
    if recipe.training.learning_rate == "find":  # LR range test on training batches, weights restored (train/)
        chosen["training.learning_rate"], lr_found = timer.time(
            "lr_find", lambda: lr_find.resolve_found_rate(task, model, tokenizer, encoded, recipe, console))
    record_auto_choices(run_dir, recipe, chosen, console)
    plan_batch(recipe, task, model, encoded)  # a step that cannot fit in memory stops here, before the baselines
    baselines = timer.time(
        "baselines",
        lambda: task.baselines(recipe, data, resolved, tokenizer, encoded.max_length) if is_main_process() else {},
    )
    _print_baselines(console, baselines)
    trainable, total = count_parameters(model)
    console.print(f"fine-tuning {trainable:,} of {total:,} parameters ({recipe.model.peft.method})")
    outcome = timer.time(
        "train",
        lambda: fit(task, model, tokenizer, encoded, data, recipe, run_dir.checkpoints, run_dir.log_history, console,
                    extra_callbacks, resume_from=run_dir.resume_from),
    )
    wait_for_all()
    if not is_main_process():
        return {"train": {"global_step": outcome.global_step}}
    meta = task.model_meta(data) | {"task": task.name, "max_length": encoded.max_length}
    settings = EvalSettings(
        max_length=encoded.max_length,
        batch_size=recipe.training.eval_batch,
        top_errors=recipe.report.top_errors,
    )
    calibration = timer.time("calibrate", lambda: task.calibrate(model, tokenizer, data, recipe, settings))
    meta |= calibration.get("meta", {})  # e.g. the softmax temperature, saved in tailor_model.json
    evaluation = timer.time("evaluate", lambda: task.evaluate(model, tokenizer, data.test, meta, settings))
    if unlabelled is not None:  # adapt.self_train: pseudo-label, retrain; the student replaces all only if not worse
        st = timer.time("self_train", lambda: self_train(task, recipe, Fitted(model, outcome, calibration, evaluation,
                        meta), SelfTrainContext(body, tokenizer, data, settings, run_dir), unlabelled, console))
        model, outcome, calibration, evaluation, meta = (st.kept.model, st.kept.outcome, st.kept.calibration,
                                                         st.kept.evaluation, st.kept.meta)
        adapted = adapted | {"self_training": st.record}
    predictions = pop_predictions(evaluation, baselines)  # per-example rows: predictions.jsonl
    mark_floors(baselines, task.name)  # baseline.<key>.floor: lower bounds, never the bar to clear (evaluate/floors.py)
    fairness = timer.time("fairness", lambda: audit_run(recipe, task, model, tokenizer, data, predictions, settings,
                                                        mitigation)) if recipe.fairness.active else None  # fairness/
    timer.time("save_model", lambda: save_model(model, tokenizer, run_dir, recipe, body, meta))
    shutil.rmtree(run_dir.checkpoints, ignore_errors=True)
    metrics = {
        "task": task.name,
        **({"labels": meta["labels"]} if "labels" in meta else {}),
        "model": {"name": resolved.name, "path": str(run_dir.model), "base": resolved.source,
                  "peft": recipe.model.peft.method, "max_length": encoded.max_length},
        "baseline": baselines,
        "tuned": evaluation["metrics"],
        **({"calibration": calibration["report"]} if calibration.get("report") else {}),
        "validation": _best_validation(outcome.log_history, outcome.best_step),
        "train": {
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
        },
        "memory": outcome.machine_memory or {},  # free memory seen this time: a reading, like the timings
        **{k: v for k, v in evaluation.items() if k != "metrics"},
        "data": {"train": len(data.train), "validation": len(data.validation), "test": len(data.test),
                 "rejected": len(data.rejects), "tokenize_cache": cache_status},
    }
    timer.stages["total"] = round(time.perf_counter() - started, 3)
    metrics["timings_s"] = timer.stages
    if chosen:
        metrics["auto"] = {key: choice.as_dict() for key, choice in chosen.items()}
    if lr_found is not None:
        metrics["lr_find"] = lr_found.as_dict()
    if fairness:
        metrics["fairness"] = fairness
    if adapted:
        metrics["adapt"] = adapted
    record_predictions(run_dir, metrics, predictions)  # + bootstrap CI and paired test vs baseline
    metrics["verdict"] = judge(metrics, recipe).as_dict()  # tuned vs the best reference baseline, in one sentence
    run_dir.write_json("metrics.json", metrics)
    run_dir.write_json("log_history.json", outcome.log_history)
    render_report(run_dir.path)
    write_model_card(run_dir.path)  # model/README.md: needs metrics.json, so it comes last
    return metrics


def record_auto_choices(run_dir: RunDir, recipe: Recipe, chosen: dict[str, auto.Choice], console: Console) -> None:
    """Say what ``auto`` picked, and rewrite the resolved recipe with the concrete values (``auto.json`` keeps
    which keys were automatic, so a resumed run with the same recipe still matches)."""
    run_dir.write_json(AUTO_FILE, {key: c.as_dict() for key, c in chosen.items()})
    if not chosen:
        return
    console.print("auto: " + " · ".join(f"{key.removeprefix('training.')} {c.value} ({c.reason})"
                                        for key, c in chosen.items()))
    header = "".join(f"# {key}: auto -> {c.value}: {c.reason}\n" for key, c in chosen.items())
    run_dir.write_text("recipe.resolved.yaml", header + dump_recipe(recipe))


def _best_validation(log_history: list[dict[str, Any]], best_step: int | None) -> dict[str, float]:
    """Validation metrics of the checkpoint that was kept (the last evaluation when none was chosen)."""
    evals = [entry for entry in log_history if "eval_loss" in entry]
    if not evals:
        return {}
    kept = next((e for e in evals if e.get("step") == best_step), evals[-1])
    skip = ("runtime", "per_second")
    values = {k.removeprefix("eval_"): v for k, v in kept.items() if k.startswith("eval_") and not k.endswith(skip)}
    return values | {"epoch": kept.get("epoch"), "step": kept.get("step")}


def _print_baselines(console: Console, baselines: dict[str, Any]) -> None:
    for name, result in baselines.items():
        if result and "f1_macro" in result:
            console.print(f"baseline {name.replace('_', ' ')}: accuracy {result['accuracy']:.4f} · "
                          f"macro-F1 {result['f1_macro']:.4f}")
