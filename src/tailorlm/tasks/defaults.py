"""What a recipe may leave unset because the task decides it: the model to fine-tune."""

from __future__ import annotations

from typing import Any

from tailorlm.errors import RecipeError
from tailorlm.recipe import Recipe


def fill_model_name(recipe: Recipe, task: Any) -> None:
    """``model.name`` from the task's default; a task whose ``default_model`` is None needs the recipe to name one."""
    if recipe.model.name is None:
        if task.default_model is None:
            hint = getattr(task, "model_hint", None) or f"task '{task.name}' has no default model; set model.name"
            raise RecipeError(hint)
        recipe.model.name = task.default_model
