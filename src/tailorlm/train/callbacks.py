"""Trainer callbacks: a rich progress bar, a divergence guard, and the training log on disk."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

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
        for key in (f"eval_{self.metric}", "eval_accuracy", "eval_loss"):
            if key in metrics:
                shown.append(f"{key.removeprefix('eval_')} {metrics[key]:.4f}")
        self.console.print("  validation · " + " · ".join(shown))

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class DivergenceGuard(TrainerCallback):
    """Stop as soon as the logged training loss is NaN or infinite, and remember where."""

    def __init__(self) -> None:
        self.diverged_at: int | None = None
        self.value: float | None = None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None,
               **kw: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged_at = state.global_step
            self.value = float(loss)
            control.should_training_stop = True


class LogHistoryWriter(TrainerCallback):
    """Keep ``log_history.json`` current, so an interrupted run still shows its learning curves."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, logs: Any = None,
               **kw: Any) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.log_history, indent=1), encoding="utf-8")
        tmp.replace(self.path)
