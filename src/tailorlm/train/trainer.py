"""Training with transformers' Trainer, configured from the recipe.

Everything the Trainer needs is derived here from the recipe (``training_arguments``), so the recipe stays the
single source of truth. Choices that differ from Trainer's defaults, and why:
- length-grouped batches (``train_sampling_strategy="group_by_length"``): similar lengths share a batch, so
  dynamic padding wastes little compute;
- validation at each epoch (or more often), keeping the best checkpoint by the task's metric, with early stopping;
- fused AdamW where the installed torch has it for the device;
- only the model is checkpointed (no optimiser state) because the best weights are what the run keeps;
- the per-device batch is the largest divisor of ``training.batch_size`` whose step fits in the machine's free
  memory, with gradient accumulation keeping the effective batch (train/memory_fit.py), said in one line.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from transformers import (
    EarlyStoppingCallback,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TrainingArguments,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import UserError
from tailorlm.metric_names import greater_is_better
from tailorlm.recipe import Recipe
from tailorlm.tasks.base import EncodedSplits, Task
from tailorlm.train.auto import optimizer_steps_per_epoch
from tailorlm.train.callbacks import DivergenceGuard, LogHistoryWriter, RichProgressCallback
from tailorlm.train.distributed import world_size
from tailorlm.train.lm_loss import accepts_logits_to_keep
from tailorlm.train.memory_fit import (
    BatchFit,
    agree_across_processes,
    fit_micro_batch,
    memory_budget,
    model_size,
)
from tailorlm.train.objective import Objective
from tailorlm.train.optim import optimizer_cls_and_kwargs
from tailorlm.train.resume import ResumableTrainer, last_checkpoint, save_callbacks, train_guarded
from tailorlm.train.speed import speed_arguments


@dataclass
class TrainOutcome:
    log_history: list[dict[str, Any]]
    runtime_s: float
    samples_per_s: float
    epochs_run: float
    global_step: int
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    tokens_seen: int
    batch_size: int  # per device, as trained: below the recipe's after training.auto_batch_size shrank it
    global_batch: int  # batch_size × gradient accumulation × processes
    memory: dict[str, Any] | None = None  # the memory plan's decision (BatchFit.record)
    machine_memory: dict[str, Any] | None = None  # free memory seen and the reason (BatchFit.machine)


def use_bf16(recipe: Recipe) -> bool:
    """bf16 where it is fast: Ampere-or-newer GPUs. CPUs here lack native bf16 matmul, so fp32 stays."""
    precision = recipe.training.precision
    if precision == "bf16":
        return True
    return precision == "auto" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def training_arguments(recipe: Recipe, task: Task, n_train: int, has_validation: bool, out: Path,
                       batch_fit: BatchFit | None = None) -> TrainingArguments:
    """``batch_fit``: the memory plan (train/memory_fit.py); the effective batch is the recipe's either way."""
    t = recipe.training
    micro, accumulation = (batch_fit.micro_batch, batch_fit.accumulation) if batch_fit else (t.batch_size, 1)
    eval_batch = t.eval_batch
    if batch_fit is not None:
        eval_batch = min(eval_batch, batch_fit.eval_batch)
    steps_per_epoch = optimizer_steps_per_epoch(n_train, t.batch_size, t.gradient_accumulation, world_size())
    eval_every = max(1, steps_per_epoch // t.evals_per_epoch)
    metric = t.metric or task.default_metric
    evaluating = "steps" if has_validation else "no"
    return TrainingArguments(
        output_dir=str(out),
        num_train_epochs=t.epochs,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=eval_batch,
        gradient_accumulation_steps=t.gradient_accumulation * accumulation,
        weight_decay=t.weight_decay,
        warmup_steps=t.warmup,
        lr_scheduler_type=t.lr_scheduler,
        label_smoothing_factor=t.label_smoothing,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        eval_strategy=evaluating,
        eval_steps=eval_every,
        # checkpoints at each evaluation, or every training.save_steps without validation (resume needs them);
        # full checkpoints (optimiser, scheduler, RNG) unless resuming is off (train/resume.py)
        save_strategy="steps" if has_validation or t.resume != "never" else "no",
        save_steps=eval_every if has_validation else (t.save_steps or eval_every),
        save_total_limit=t.save_total_limit,
        save_only_model=t.resume == "never",
        logging_nan_inf_filter=False,  # DivergenceGuard must see a NaN loss, not Trainer's stand-in average
        load_best_model_at_end=has_validation,
        metric_for_best_model=metric if has_validation else None,
        greater_is_better=greater_is_better(metric),
        logging_strategy="steps",
        logging_steps=max(1, min(50, steps_per_epoch // 5)),
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        length_column_name="length",
        bf16=use_bf16(recipe),
        fp16=t.precision == "fp16",
        **speed_arguments(t, token_weighted_loss=task.peft_task_type == "CAUSAL_LM"),  # train/speed.py
        use_cpu=not torch.cuda.is_available(),
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=True,
    )


def fit(
    task: Task,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    encoded: EncodedSplits,
    data: PreparedData,
    recipe: Recipe,
    checkpoints: Path,
    log_path: Path,
    console: Console,
    extra_callbacks: list[Any] | None = None,
    resume_from: Path | None = None,
    loss_terms: list[Any] | None = None,
) -> TrainOutcome:
    """Train ``model`` in place; the best validation checkpoint is loaded back at the end.

    ``resume_from``: a complete checkpoint of an interrupted run of the same recipe (train/resume.py).
    ``loss_terms``: extra terms added to the task loss (train/objective.py), e.g. a domain-adversarial loss.
    """
    has_validation = encoded.validation is not None and len(encoded.validation) > 0
    batch_fit, args = _agreed_batch(recipe, task, model, encoded, has_validation, checkpoints)
    if batch_fit.reduced:
        console.print(f"memory: {batch_fit.reason}")
    guard = DivergenceGuard()
    trainer = ResumableTrainer(  # Trainer with a (seed, epoch)-determined batch order (train/resume.py)
        model=model,
        args=args,
        train_dataset=encoded.train,
        eval_dataset=encoded.validation if has_validation else None,
        data_collator=task.collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=task.compute_metrics(data) if has_validation else None,
        callbacks=_callbacks(recipe, task, has_validation, guard, log_path, console, extra_callbacks),
        # layer-wise LR decay: per-layer param groups, same optimizer class (train/optim.py); None when off
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(model, args, recipe.training.layer_lr_decay),
    )
    # per-example weights and extra loss terms, for every head (train/objective.py)
    trainer.objective = Objective(task.loss_kind(recipe), recipe.training.label_smoothing, list(loss_terms or []),
                                  huber_delta=recipe.regression.huber_delta)
    # causal LM: the loss from the labelled tokens' logits only, never the whole batch's (train/lm_loss.py)
    trainer.selected_logits_loss = task.peft_task_type == "CAUSAL_LM" and accepts_logits_to_keep(model)
    # Our rich progress replaces Trainer's tqdm bar and its print-every-log fallback.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    started = time.perf_counter()
    with _no_batch_fits_as_user_error(recipe):
        train_guarded(trainer, recipe, model, checkpoints, resume_from)  # disk check, resume, OOM -> UserError
    runtime = time.perf_counter() - started
    if guard.diverged_at is not None:
        raise guard.error(last_checkpoint(checkpoints))
    return _outcome(trainer, encoded, runtime, batch_fit, console)


def _agreed_batch(recipe: Recipe, task: Task, model: PreTrainedModel, encoded: EncodedSplits, has_validation: bool,
                  checkpoints: Path) -> tuple[BatchFit, TrainingArguments]:
    """The memory plan's micro-batch, agreed by every data-parallel process, and the arguments built from it."""
    batch_fit = plan_batch(recipe, task, model, encoded)
    args = training_arguments(recipe, task, len(encoded.train), has_validation, checkpoints, batch_fit)
    if world_size() > 1:
        _ = args.device  # sets up the process group, through which the processes agree on one micro-batch
        agreed = agree_across_processes(batch_fit)
        if agreed != batch_fit:
            batch_fit = agreed
            args = training_arguments(recipe, task, len(encoded.train), has_validation, checkpoints, batch_fit)
    return batch_fit, args


def _callbacks(recipe: Recipe, task: Task, has_validation: bool, guard: DivergenceGuard, log_path: Path,
               console: Console, extra_callbacks: list[Any] | None) -> list[Any]:
    metric = recipe.training.metric or task.default_metric
    callbacks: list[Any] = [*save_callbacks(recipe, has_validation), RichProgressCallback(console, metric), guard,
                            LogHistoryWriter(log_path)]  # the guard after SaveEvery: it can cancel a NaN save
    callbacks.extend(extra_callbacks or [])  # e.g. tune's pruning callback (tailorlm/tune/objective.py)
    if has_validation and recipe.training.early_stopping_patience:
        callbacks.append(
            EarlyStoppingCallback(
                early_stopping_patience=recipe.training.early_stopping_patience,
                early_stopping_threshold=recipe.training.early_stopping_min_delta,
            )
        )
    return callbacks


def _outcome(trainer: ResumableTrainer, encoded: EncodedSplits, runtime: float, batch_fit: BatchFit,
             console: Console) -> TrainOutcome:
    """What the run reports about training: steps, throughput as trained, the kept checkpoint, the memory plan."""
    state = trainer.state
    batch_size = _batch_size_trained(trainer, console)
    global_batch = batch_size * trainer.args.gradient_accumulation_steps * world_size()
    samples = min(state.global_step * global_batch, len(encoded.train) * (state.epoch or 0))
    tokens = int(sum(encoded.train["length"]) * (state.epoch or 0))
    return TrainOutcome(
        log_history=list(state.log_history),
        runtime_s=runtime,
        samples_per_s=samples / runtime if runtime else 0.0,
        epochs_run=float(state.epoch or 0),
        global_step=state.global_step,
        best_step=_step_of(state.best_model_checkpoint),
        best_metric=state.best_metric,
        stopped_early=state.global_step < state.max_steps,
        tokens_seen=tokens,
        batch_size=batch_size,
        global_batch=global_batch,
        memory=batch_fit.record(),
        machine_memory=batch_fit.machine(),
    )


@contextmanager
def _no_batch_fits_as_user_error(recipe: Recipe) -> Iterator[None]:
    """accelerate's batch-size finder ends with a bare RuntimeError when even one row runs out of memory."""
    try:
        yield
    except RuntimeError as exc:
        if recipe.training.auto_batch_size and "No executable batch size found" in str(exc):
            raise UserError(
                f"training.auto_batch_size: out of memory at every batch from {recipe.training.batch_size} down to 1 "
                "row per device; lower training.max_length, set training.gradient_checkpointing=true, use "
                "model.peft.method=lora, or pick a smaller model (tailor estimate RECIPE)"
            ) from None
        raise


def _batch_size_trained(trainer: ResumableTrainer, console: Console) -> int:
    """The per-device batch the final training attempt used, said in one line when it is not the one asked for.

    With ``training.auto_batch_size`` Trainer retries an out-of-memory attempt at 0.9× the batch (accelerate's
    ``find_executable_batch_size``, repeatedly) without raising gradient accumulation, so the global batch shrinks
    too; samples/s and the report must count the batches actually trained, not the recipe's.
    """
    asked = trainer.args.per_device_train_batch_size
    used = trainer.state.train_batch_size or asked
    if used != asked:
        console.print(f"out of memory at batch {asked} per device: trained at batch {used} "
                      f"(training.auto_batch_size; gradient accumulation unchanged)")
    return used


def plan_batch(recipe: Recipe, task: Task, model: PreTrainedModel, encoded: EncodedSplits) -> BatchFit:
    """The per-device batch that fits this machine (train/memory_fit.py) for the longest training row.

    Data-parallel processes on one CPU share its RAM, so each plans for its share.
    """
    t = recipe.training
    on_gpu = torch.cuda.is_available()
    available, source = memory_budget(t.memory_limit, on_gpu)
    if available is not None and not on_gpu:
        available //= world_size()
    lengths = encoded.train["length"] if "length" in encoded.train.column_names else []
    longest = max(lengths) if len(lengths) else encoded.max_length
    packed = bool(encoded.stats.get("packing"))  # a packed batch is one row of micro-batch × max_length tokens
    size = model_size(model, causal_lm=task.peft_task_type == "CAUSAL_LM")
    return fit_micro_batch(size, t.batch_size, int(encoded.max_length if packed else longest), available,
                           eval_batch_size=t.eval_batch_size, bytes_per_value=2 if use_bf16(recipe) else 4,
                           checkpointing=t.gradient_checkpointing, source=source)


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    try:
        return int(Path(checkpoint).name.rsplit("-", 1)[-1])
    except ValueError:
        return None


def best_validation(log_history: list[dict[str, Any]], best_step: int | None) -> dict[str, float]:
    """Validation metrics of the checkpoint that was kept (the last evaluation when none was chosen)."""
    evals = [entry for entry in log_history if "eval_loss" in entry]
    if not evals:
        return {}
    kept = next((e for e in evals if e.get("step") == best_step), evals[-1])
    skip = ("runtime", "per_second")
    values = {k.removeprefix("eval_"): v for k, v in kept.items() if k.startswith("eval_") and not k.endswith(skip)}
    return values | {"epoch": kept.get("epoch"), "step": kept.get("step")}
