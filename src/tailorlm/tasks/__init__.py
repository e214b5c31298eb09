"""Tasks: one small object per kind of problem. The pipeline looks a task up here by the recipe's ``task``.

Modules are imported on first use, so `tailor` starts fast and a task's extra dependencies (sacrebleu, seqeval)
are only needed by the runs that use it.
"""

from __future__ import annotations

import importlib

from tailorlm.errors import RecipeError
from tailorlm.tasks.base import EncodedSplits, EvalSettings, Task

TASKS: dict[str, str] = {
    "classification": "tailorlm.tasks.classification.task:ClassificationTask",
    "generation": "tailorlm.tasks.generation.task:GenerationTask",
    "qa": "tailorlm.tasks.qa.task:QATask",
    "translation": "tailorlm.tasks.translation.task:TranslationTask",
    "token-classification": "tailorlm.tasks.token_classification.task:TokenClassificationTask",
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise RecipeError(f"task '{name}' is not known; choose one of: {', '.join(TASKS)}")
    module_name, _, class_name = TASKS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise RecipeError(f"task '{name}' is not available in this version of tailorlm") from None
        raise
    return getattr(module, class_name)()


__all__ = ["TASKS", "EncodedSplits", "EvalSettings", "Task", "get_task"]
