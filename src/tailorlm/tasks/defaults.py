"""What a recipe may leave unset because the task decides it: the model to fine-tune."""

from __future__ import annotations

from tailorlm.recipe import Recipe
from tailorlm.tasks import get_spec


def fill_model_name(recipe: Recipe) -> None:
    """``model.name`` from the task's default (TaskSpec.model_name); one line when the task has none."""
    recipe.model.name = get_spec(recipe.task).model_name(recipe.model.name)
