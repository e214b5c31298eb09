"""Tasks: one small object per kind of problem. The pipeline looks a task up here by the recipe's ``task``."""

from __future__ import annotations

from tailorlm.errors import RecipeError
from tailorlm.tasks.base import EncodedSplits, Task


def _classification() -> Task:
    from tailorlm.tasks.classification import ClassificationTask

    return ClassificationTask()


TASKS = {"classification": _classification}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise RecipeError(f"task '{name}' is not known; choose one of: {', '.join(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "EncodedSplits", "Task", "get_task"]
