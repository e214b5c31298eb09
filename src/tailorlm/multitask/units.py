"""One task of a multi-task run: its entry of ``tasks:``, the single-task recipe it is run with, and what the stages
leave for it (prepared data, encoded splits, baselines, the test evaluation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailorlm.recipe import Recipe, TaskEntry

#: where each task's own files go inside the run directory (data report, rejects, predictions)
TASKS_DIR = "tasks"


def task_recipe(recipe: Recipe, entry: TaskEntry, output_dir: str | Path | None = None) -> Recipe:
    """The single-task recipe of ``entry``: the shared model and training, its own task type and data."""
    single = recipe.model_copy(deep=True)
    single.tasks = None
    single.task = entry.task
    single.data = entry.data.model_copy(deep=True)
    if output_dir is not None:
        single.output_dir = str(output_dir)
    return single


@dataclass
class TaskUnit:
    """A task of the run and what the stages have made of it so far."""

    entry: TaskEntry
    recipe: Recipe
    task: Any  # tailorlm.tasks.base.Task
    data: Any = None
    encoded: Any = None
    baselines: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    predictions: list[dict[str, Any]] | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def spec(self) -> Any:
        return self.task.spec

    @property
    def main_metric(self) -> str:
        return self.spec.main_metric.name

    def loss_kind(self) -> str:
        return self.task.loss_kind(self.recipe)
