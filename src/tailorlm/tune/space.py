"""The search space: ``search.space`` checked against the recipe, and a trial's values as ``--set`` overrides.

Every searched key must be a real recipe key, so a typo fails before the first trial (with did-you-mean) rather
than after an hour of trials that all ignored it. The low and high ends (or every choice) are also validated as
recipe values, so ``training.batch_size: {low: 0, ...}`` is refused up front. A trial's values reach the
recipe through the same override path as ``--set``: one mechanism, one set of error messages.
"""

from __future__ import annotations

import math
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from tailorlm.errors import RecipeError
from tailorlm.recipe import ParamSpec, Recipe, all_keys, apply_overrides, closest_key, recipe_from_dict

#: keys a trial must not change: they say where and how the search itself runs
NOT_SEARCHABLE = ("search", "output_dir", "task")
#: the most points a numeric range may expand to in a grid without an explicit ``grid`` list
MAX_RANGE_POINTS = 50
OPTUNA_TYPES = (type(None), bool, int, float, str)


def leaf_keys() -> list[str]:
    """Recipe keys that hold a value (sections such as ``training`` are not searchable themselves)."""
    keys = all_keys()
    return [k for k in keys if not any(other.startswith(k + ".") for other in keys)]


def _field_type(key: str) -> Any:
    """The annotation of a dotted recipe key, to tell integer keys from float ones."""
    model: type[BaseModel] = Recipe
    annotation: Any = None
    if key.startswith("tasks."):  # tasks.<name>.<key>: a key of TaskEntry
        from tailorlm.recipe import TaskEntry

        model, key = TaskEntry, key.split(".", 2)[2]
    for part in key.split("."):
        annotation = model.model_fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return annotation


def is_integer_type(annotation: Any) -> bool:
    """``int``, ``PositiveInt`` and ``PositiveInt | Literal["auto"]`` (``training.batch_size``): the numbers a key
    takes are whole numbers (its words, such as ``auto``, are not searched)."""
    if annotation is int:
        return True
    origin = get_origin(annotation)
    if origin is Annotated:
        return is_integer_type(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        numbers = [a for a in get_args(annotation) if get_origin(a) is not Literal and a is not type(None)]
        return bool(numbers) and all(is_integer_type(a) for a in numbers)
    return False


def check_space(recipe: Recipe) -> None:
    """Refuse an empty space, unknown or unsearchable keys, and values the recipe would reject."""
    space = recipe.search.space
    if not space:
        raise RecipeError(
            "search.space is empty; add the keys to search, e.g. search.space: {training.learning_rate: "
            "{type: loguniform, low: 1.0e-5, high: 1.0e-3}}"
        )
    leaves = set(leaf_keys())
    for key, spec in space.items():
        _check_key(key, leaves) if not key.startswith("tasks.") else _check_task_key(recipe, key)
        if spec.type in ("loguniform", "uniform") and is_integer_type(_field_type(key)):
            raise RecipeError(f"search.space '{key}': an integer key; use type: int (or categorical)")
        for value in _probe_values(spec):
            _check_value(recipe, key, value)
        if recipe.search.method == "grid":
            grid_values(key, spec)


def _check_task_key(recipe: Recipe, key: str) -> None:
    """``tasks.<name>.<key>``: a key of one task of a multi-task recipe (its name, type and files stay)."""
    from tailorlm.recipe import TaskEntry

    _, name, rest = [*key.split(".", 2), "", ""][:3]
    names = [entry.name for entry in recipe.tasks or []]
    if name not in names:
        shown = ", ".join(names) or "none"
        raise RecipeError(f"search.space '{key}': no task '{name}'; the recipe's tasks are: {shown}")
    fixed = rest in ("name", "task") or rest in ("data.train", "data.validation", "data.test")
    if rest not in all_keys(TaskEntry) or fixed:
        raise RecipeError(f"search.space '{key}': not a searchable key of a task (e.g. tasks.{name}.loss_weight)")


def _check_key(key: str, leaves: set[str]) -> None:
    if key in leaves:
        if key.split(".")[0] in NOT_SEARCHABLE:
            raise RecipeError(f"search.space '{key}': cannot be searched; a trial must not change where or what runs")
        return
    if key in all_keys():
        raise RecipeError(f"search.space '{key}': is a section, not a value; name a key inside it, e.g. '{key}.…'")
    suggestion = closest_key(key)
    hint = f"did you mean '{suggestion}'?" if suggestion else "see `tailor keys` for the valid keys"
    raise RecipeError(f"search.space: unknown recipe key '{key}'; {hint}")


def _probe_values(spec: ParamSpec) -> list[Any]:
    """The values worth validating before any trial runs: both ends of a range, every listed value."""
    values = list(spec.choices or []) + list(spec.grid or [])
    if spec.type != "categorical":
        ends = [spec.low, spec.high]
        values += [int(v) for v in ends] if spec.type == "int" else ends  # type: ignore[arg-type]
    for value in values:
        if not isinstance(value, OPTUNA_TYPES):
            raise RecipeError(f"search.space: value {value!r} is not a number, string, boolean or null; "
                              "lists and mappings cannot be searched")
    return values


def _check_value(recipe: Recipe, key: str, value: Any) -> None:
    raw = recipe.model_dump(mode="json")
    apply_overrides(raw, [override(key, value)])
    recipe_from_dict(raw, f"search.space '{key}' = {value!r}")


def grid_values(key: str, spec: ParamSpec) -> list[Any]:
    """The finite list grid search tries for one key: choices, the ``grid`` list, or a short stepped range."""
    if spec.grid:
        return list(spec.grid)
    if spec.type == "categorical":
        return list(spec.choices or [])
    if spec.type == "int":
        step = int(spec.step or 1)
        values = list(range(int(spec.low), int(spec.high) + 1, step))  # type: ignore[arg-type]
    elif spec.type == "uniform" and spec.step:
        count = math.floor((spec.high - spec.low) / spec.step + 1e-9) + 1  # type: ignore[operator]
        values = [round(spec.low + i * spec.step, 12) for i in range(count)]  # type: ignore[operator]
    else:
        raise RecipeError(
            f"search.space '{key}': grid search needs a finite list; add grid: [values] to its spec "
            "(e.g. grid: [1.0e-5, 3.0e-5, 1.0e-4]) or use --method random|bayes"
        )
    if len(values) > MAX_RANGE_POINTS:
        raise RecipeError(f"search.space '{key}': the range gives {len(values)} grid points; add a larger step "
                          "or list the values with grid: [...]")
    return values


def grid_space(recipe: Recipe) -> dict[str, list[Any]]:
    return {key: grid_values(key, spec) for key, spec in recipe.search.space.items()}


def grid_size(recipe: Recipe) -> int:
    return math.prod(len(values) for values in grid_space(recipe).values())


def suggest(trial: Any, recipe: Recipe) -> dict[str, Any]:
    """The trial's value of every searched key (Optuna param names are the dotted recipe keys)."""
    params: dict[str, Any] = {}
    for key, spec in recipe.search.space.items():
        if recipe.search.method == "grid":
            params[key] = trial.suggest_categorical(key, grid_values(key, spec))
        elif spec.type == "categorical":
            params[key] = trial.suggest_categorical(key, spec.choices)
        elif spec.type == "loguniform":
            params[key] = trial.suggest_float(key, spec.low, spec.high, log=True)
        elif spec.type == "uniform":
            params[key] = trial.suggest_float(key, spec.low, spec.high, step=spec.step)
        else:
            params[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1))
    return params


def override(key: str, value: Any) -> str:
    """``key=value`` as --set takes it; floats keep their dot (YAML reads ``1e-05`` as a string)."""
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return f"{key}={text.removesuffix('...').strip()}"


def overrides(params: dict[str, Any]) -> list[str]:
    return [override(key, value) for key, value in params.items()]
