"""Training several tasks on one encoder with transformers' Trainer: one task per batch, from a task sampler.

``MultiTaskTrainer`` changes four things of Trainer and nothing else: the training batches (a torch DataLoader
over every task's encoded rows whose batch sampler is ``sampling.TaskBatchSampler``, each batch padded by its own
task's collator), the loss (the batch's task's objective, train/objective.py, weighed by the balance method),
the step under PCGrad (one batch per task, shared-encoder gradients projected), and the evaluation (each task's
own evaluation on its validation split, the combined selection metric, gradient cosines between tasks).
Checkpoints, the schedule, early stopping, the best checkpoint and resume are Trainer's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader, Dataset
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from tailorlm.errors import UserError
from tailorlm.multitask.balance import cosines, pcgrad
from tailorlm.multitask.model import MultiTaskModel
from tailorlm.multitask.sampling import SamplingPlan, TaskBatchSampler, TaskRows
from tailorlm.multitask.units import TaskUnit
from tailorlm.recipe import Recipe
from tailorlm.train.callbacks import LogHistoryWriter, RichProgressCallback
from tailorlm.train.objective import Objective
from tailorlm.train.trainer import TrainOutcome, use_bf16

#: the encoded columns a head reads (``length`` and bookkeeping columns stay behind)
MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels", "start_positions", "end_positions",
                 "weight")
#: evaluations per run at most (each scores every task's validation split)
MAX_EVALUATIONS = 20
#: the name of the combined selection metric in the evaluation logs (``eval_combined``)
COMBINED = "combined"


class TaskRowsDataset(Dataset):
    """Every task's encoded training rows, indexed by ``(task, row)``."""

    def __init__(self, splits: list[Any]) -> None:
        self.splits = splits

    def __len__(self) -> int:
        return sum(len(s) for s in self.splits)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, dict[str, Any]]:
        task, row = key
        item = self.splits[task][int(row)]
        return task, {k: v for k, v in item.items() if k in MODEL_COLUMNS}


def task_collate(names: list[str], collators: list[Callable]) -> Callable:
    """Pad each task's rows with its own collator; a batch of several tasks (PCGrad) becomes ``{"pcgrad": [...]}``."""
    def collate(items: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        order = list(dict.fromkeys(task for task, _ in items))
        batches = [dict(collators[t]([row for task, row in items if task == t])) | {"task": names[t]}
                   for t in order]
        return batches[0] if len(batches) == 1 else {"pcgrad": batches}

    return collate


class MultiTaskTrainer(Trainer):
    """Trainer over a :class:`MultiTaskModel`; set :meth:`configure` before ``train``."""

    def configure(self, mt: MultiTaskModel, units: list[TaskUnit], sampler: TaskBatchSampler, recipe: Recipe,
                  validate: Callable[[], dict[str, float]]) -> None:
        self.mt, self.units, self.sampler, self.validate = mt, units, sampler, validate
        self.objectives = {u.name: Objective(u.loss_kind(), recipe.training.label_smoothing,
                                             huber_delta=recipe.regression.huber_delta) for u in units}
        self.loss_weights = {u.name: u.entry.loss_weight for u in units}
        self.collate = task_collate([u.name for u in units], [u.task.collator(self.processing_class) for u in units])
        self.conflict_batches = recipe.multitask.conflict_batches
        self.uncertainty_lr = recipe.multitask.uncertainty_lr
        self.seen: dict[str, list[float]] = {u.name: [] for u in units}
        self.model_accepts_loss_kwargs = False  # the objective returns a batch mean; Trainer scales for accumulation

    # ------------------------------------------------------------------ data and loss
    def get_train_dataloader(self) -> DataLoader:
        dataset = TaskRowsDataset([u.encoded.train for u in self.units])
        return DataLoader(dataset, batch_sampler=self.sampler, collate_fn=self.collate,
                          pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available())

    def create_optimizer(self, model: Any = None) -> Any:
        """Trainer's optimizer, with the uncertainty log-variances as their own group (no decay, their own rate)."""
        balance = self.mt.uncertainty
        if balance is None or self.optimizer is not None:
            return super().create_optimizer(model)
        balance.log_vars.requires_grad_(False)  # left out of Trainer's groups...
        try:
            optimizer = super().create_optimizer(model)
        finally:
            balance.log_vars.requires_grad_(True)
        optimizer.add_param_group({"params": [balance.log_vars], "lr": self.uncertainty_lr, "weight_decay": 0.0})
        return optimizer  # ...and the scheduler, built after, scales this group's rate like the others

    def task_loss(self, name: str, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        """Task ``name``'s objective on its batch, weighed by the balance method."""
        raw, outputs = self.objectives[name](self.mt.view(name), inputs)
        if not torch.isfinite(raw):
            raise UserError(f"training diverged at step {self.state.global_step} (task '{name}': loss {raw.item()}); "
                            "lower training.learning_rate or set training.max_grad_norm")
        self.seen[name].append(float(raw.detach()))
        if self.mt.uncertainty is not None:
            return self.mt.uncertainty(self.mt.names.index(name), raw), outputs
        return raw * self.loss_weights[name], outputs

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        inputs = dict(inputs)
        loss, outputs = self.task_loss(inputs.pop("task"), inputs)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        """PCGrad: a batch of every task; each task's shared-encoder gradient projected off the others' conflicts."""
        if "pcgrad" not in inputs:
            return super().training_step(model, inputs, num_items_in_batch)
        model.train()
        inputs = self._prepare_inputs(inputs)
        shared = self.mt.shared_parameters()
        flat, total = [], torch.zeros((), device=self.args.device)
        for batch in inputs["pcgrad"]:
            batch = dict(batch)
            name = batch.pop("task")
            with self.compute_loss_context_manager():
                loss, _ = self.task_loss(name, batch)
            loss = loss / self.current_gradient_accumulation_steps
            heads = self.mt.head_parameters(name)
            grads = torch.autograd.grad(loss, shared + heads, allow_unused=True)
            for p, g in zip(heads, grads[len(shared):], strict=True):
                if g is not None:
                    p.grad = g if p.grad is None else p.grad + g
            flat.append(_flat(shared, grads[: len(shared)]))
            total = total + loss.detach()
        combined, offset = pcgrad(flat, seed=self.state.global_step), 0
        for p in shared:
            g = combined[offset : offset + p.numel()].view_as(p)
            p.grad = g.clone() if p.grad is None else p.grad + g
            offset += p.numel()
        return total

    # ------------------------------------------------------------------ evaluation and logs
    def gradient_cosines(self) -> dict[str, float]:
        """Cosines between the tasks' mean gradients on the shared encoder, on fixed training batches."""
        shared = self.mt.shared_parameters()
        means = []
        for t, unit in enumerate(self.units):
            rows = TaskRows(len(unit.encoded.train), self.args.per_device_train_batch_size, self.args.seed, t)
            total = None
            for _ in range(self.conflict_batches):
                batch = self.collate([(t, TaskRowsDataset([unit.encoded.train])[(0, r)][1]) for r in rows.next_batch()])
                batch = self._prepare_inputs(batch)
                batch.pop("task")
                raw, _ = self.objectives[unit.name](self.mt.view(unit.name), batch)
                g = _flat(shared, torch.autograd.grad(raw, shared, allow_unused=True))
                total = g if total is None else total + g
            means.append(total)
        return cosines([u.name for u in self.units], means)

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval",
                 ) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        values = dict(self.validate())
        if self.conflict_batches and len(self.units) > 1:
            values |= {f"grad_cosine_{pair}": v for pair, v in self.gradient_cosines().items()}
        if self.mt.uncertainty is not None:
            values |= {f"weight_{n}": w for n, w in zip(self.mt.names, self.mt.uncertainty.weights(), strict=True)}
        self.model.train(was_training)
        metrics = {f"{metric_key_prefix}_{key}": value for key, value in values.items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log: each task's mean loss since the last one
            for name, losses in self.seen.items():
                if losses:
                    logs[f"loss_{name}"] = round(float(np.mean(losses)), 6)
                losses.clear()
        super().log(logs, start_time)


def _flat(params: list[torch.nn.Parameter], grads: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for p, g in zip(params, grads,
                                                                                                   strict=True)])


def multitask_arguments(recipe: Recipe, steps: int, eval_every: int, out: Path, select: str,
                        greater: bool) -> TrainingArguments:
    t = recipe.training
    return TrainingArguments(
        output_dir=str(out), max_steps=steps, learning_rate=float(t.learning_rate),
        per_device_train_batch_size=int(t.batch_size), per_device_eval_batch_size=t.eval_batch,
        gradient_accumulation_steps=t.gradient_accumulation, weight_decay=t.weight_decay, warmup_steps=t.warmup,
        lr_scheduler_type=t.lr_scheduler, max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed,
        eval_strategy="steps", eval_steps=eval_every, save_strategy="steps", save_steps=eval_every,
        save_total_limit=t.save_total_limit, save_only_model=t.resume == "never", load_best_model_at_end=True,
        metric_for_best_model=select, greater_is_better=greater, logging_strategy="steps",
        logging_steps=max(1, min(50, eval_every // 2)), bf16=use_bf16(recipe), fp16=False,
        use_cpu=not torch.cuda.is_available(), report_to=[], disable_tqdm=True, remove_unused_columns=False,
    )


def fit_multitask(mt: MultiTaskModel, units: list[TaskUnit], tokenizer: Any, recipe: Recipe, plan: SamplingPlan,
                  checkpoints: Path, log_path: Path, console: Console, validate: Callable[[], dict[str, float]],
                  select: tuple[str, bool], resume_from: Path | None = None,
                  extra_callbacks: list[Any] | None = None) -> TrainOutcome:
    """Train ``mt`` in place for ``plan.steps`` optimizer steps; the best checkpoint by ``select`` is loaded back."""
    t = recipe.training
    steps = max(1, plan.steps // t.gradient_accumulation)  # the plan counts batches, the Trainer updates
    evaluations = min(MAX_EVALUATIONS, max(1, t.evals_per_epoch * max(1, round(float(t.epochs)))))
    args = multitask_arguments(recipe, steps, max(1, steps // evaluations), checkpoints, *select)
    sampler = TaskBatchSampler(plan, int(t.batch_size), t.seed, recipe.multitask.balance == "pcgrad")
    callbacks: list[Any] = [RichProgressCallback(console, select[0]), LogHistoryWriter(log_path),
                            *(extra_callbacks or [])]
    if t.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_min_delta))
    eval_sets = {u.name: u.encoded.validation for u in units}
    trainer = MultiTaskTrainer(model=mt, args=args, train_dataset=TaskRowsDataset([u.encoded.train for u in units]),
                               eval_dataset=eval_sets, processing_class=tokenizer, callbacks=callbacks)
    trainer.configure(mt, units, sampler, recipe, validate)
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    runtime = time.perf_counter() - started
    state = trainer.state
    step_of = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1]) if state.best_model_checkpoint else None
    batch = int(t.batch_size) * (len(units) if recipe.multitask.balance == "pcgrad" else 1)
    return TrainOutcome(
        log_history=list(state.log_history), runtime_s=runtime,
        samples_per_s=state.global_step * batch / runtime if runtime else 0.0,
        epochs_run=float(state.epoch or 0), global_step=state.global_step, best_step=step_of,
        best_metric=state.best_metric, stopped_early=state.global_step < state.max_steps, tokens_seen=0,
        batch_size=int(t.batch_size), global_batch=batch * t.gradient_accumulation,
    )
