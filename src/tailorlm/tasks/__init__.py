"""Tasks: one package per kind of problem (``tasks/<name>/``), looked up here by the recipe's ``task``.

Each package states its facts once in ``spec.py`` (a :class:`~tailorlm.tasks.spec.TaskSpec`: default model, main
and checkpoint metrics, pipeline tag, demo data, capabilities) and holds its Task in ``task.py``. The specs are
plain data, so the recipe, the CLI and the model card read them without importing transformers; a Task module is
imported on first use (``get_task``), so `tailor` starts fast and a task's extra dependencies (sacrebleu, seqeval)
are only needed by the runs that use it. Adding a task is its package plus one line in ``TASK_SPECS``.
"""

from __future__ import annotations

from typing import Any

from tailorlm.errors import RecipeError
from tailorlm.tasks.classification.spec import SPEC as CLASSIFICATION
from tailorlm.tasks.generation.spec import SPEC as GENERATION
from tailorlm.tasks.qa.spec import SPEC as QA
from tailorlm.tasks.regression.spec import SPEC as REGRESSION
from tailorlm.tasks.spec import TaskSpec
from tailorlm.tasks.token_classification.spec import SPEC as TOKEN_CLASSIFICATION
from tailorlm.tasks.translation.spec import SPEC as TRANSLATION

#: every task by its recipe name, in the order the recipe's ``task`` lists them
TASK_SPECS: dict[str, TaskSpec] = {
    spec.name: spec for spec in (CLASSIFICATION, GENERATION, QA, TRANSLATION, TOKEN_CLASSIFICATION, REGRESSION)
}
TASK_NAMES: tuple[str, ...] = tuple(TASK_SPECS)


def get_spec(name: str) -> TaskSpec:
    """The spec of task ``name``; a one-line error naming the known tasks otherwise."""
    if name not in TASK_SPECS:
        raise RecipeError(f"task '{name}' is not known; choose one of: {', '.join(TASK_SPECS)}")
    return TASK_SPECS[name]


def get_task(name: str) -> Any:
    """A fresh :class:`~tailorlm.tasks.base.Task` for ``name`` (imports the task's module and its dependencies).

    Typed ``Any`` because this registry must not import ``tasks.base`` (which imports the recipe, which asks this
    registry for the task names): import ``Task`` from ``tailorlm.tasks.base`` to annotate."""
    spec = get_spec(name)
    module_name = spec.task_class.partition(":")[0]
    try:
        task_class = spec.load_task_class()
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise RecipeError(f"task '{name}' is not available in this version of tailorlm") from None
        raise
    return task_class()


__all__ = ["TASK_NAMES", "TASK_SPECS", "TaskSpec", "get_spec", "get_task"]
