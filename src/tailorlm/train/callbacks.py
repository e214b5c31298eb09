"""Trainer callbacks: a rich progress bar, a divergence guard, and the training log on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tailorlm.errors import UserError


class RichProgressCallback(TrainerCallback):
    """One progress bar for training steps, and a line per evaluation, on a rich console."""

    def __init__(self, console: Console, metric: str) -> None:
        self.console = console
        self.metric = metric
        self.progress: Progress | None = None
        self.task_id: Any = None
        self.last_loss: float | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps · loss {task.fields[loss]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task("train", total=state.max_steps, loss="–")

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.progress is not None:
            loss = f"{self.last_loss:.4f}" if self.last_loss is not None else "–"
            self.progress.update(self.task_id, completed=state.global_step, loss=loss)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None,
               **kw: Any) -> None:
        if logs and "loss" in logs:
            self.last_loss = float(logs["loss"])

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, metrics: Any = None,
                    **kw: Any) -> None:
        if not metrics:
            return
        shown = [f"epoch {state.epoch:.2f}"]
        for key in dict.fromkeys((f"eval_{self.metric}", "eval_accuracy", "eval_loss")):  # once each
            if key in metrics:
                shown.append(f"{key.removeprefix('eval_')} {metrics[key]:.4f}")
        self.console.print("  validation · " + " · ".join(shown))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class DivergenceGuard(TrainerCallback):
    """Stop at the first optimizer step whose training loss is NaN or infinite, and keep the last good checkpoint.

    Every training forward's loss is checked through a hook on the model (one scalar read per micro-batch), so
    the step is named exactly; the logged loss is a fallback for losses Trainer computes itself (label
    smoothing). The bad step's weights are already broken, so its planned save and evaluation are cancelled:
    the newest checkpoint on disk stays the last good one.
    """

    def __init__(self) -> None:
        self.diverged_at: int | None = None
        self.value: float | None = None
        self._bad: float | None = None
        self._hook: Any = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, **kw: Any) -> None:
        if model is not None and self._hook is None and hasattr(model, "register_forward_hook"):
            self._hook = model.register_forward_hook(self._check_output)

    def _check_output(self, module: Any, inputs: Any, output: Any) -> None:
        if not module.training or self._bad is not None:
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            value = float(loss.detach())
            if not math.isfinite(value):
                self._bad = value

    def _stop(self, state: TrainerState, control: TrainerControl, value: float) -> None:
        if self.diverged_at is None:
            self.diverged_at, self.value = state.global_step, value
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self._bad is not None:
            self._stop(state, control, self._bad)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None,
               **kw: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._stop(state, control, float(loss))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def error(self, kept: Path | None) -> UserError:
        """The one-line failure: where it diverged, what was kept, and the usual causes."""
        where = f"last good checkpoint kept: {kept}" if kept else "no checkpoint was saved before it"
        return UserError(
            f"training diverged: the loss became {self.value} at step {self.diverged_at} ({where}); likely causes: "
            "learning rate too high (lower training.learning_rate), fp16 overflow (training.precision=bf16 or fp32), "
            "no gradient clipping (training.max_grad_norm=1.0), or extreme values in the data"
        )


class LogHistoryWriter(TrainerCallback):
    """Keep ``log_history.json`` current, so an interrupted run still shows its learning curves."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None,
               **kw: Any) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.log_history, indent=1), encoding="utf-8")
        tmp.replace(self.path)
