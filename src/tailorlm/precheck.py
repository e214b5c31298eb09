"""Checks a recipe's inputs before the heavy stack loads: the files it names exist, csv/tsv headers hold the
task's columns, and the model name can be used here. Each takes milliseconds, where importing torch,
transformers and peft takes seconds, so a typo costs a user a second instead of ten (issue 20).

Nothing here is the final word: the run's own readers check every row later. These checks only refuse what the
run would refuse too, with the same messages, and pass anything they cannot judge cheaply (json, parquet,
compressed files beyond their header, tasks whose files have several layouts).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailorlm.errors import DataError, UserError
from tailorlm.recipe import Recipe

#: recipe keys that name an input file, besides data.train/validation/test, and when a run reads it (a file the
#: run would not read is not this check's business)
OTHER_FILES: dict[str, Callable[[Recipe], bool]] = {
    "adapt.text": lambda r: r.adapt.pretrain or (r.adapt.self_train and not r.adapt.unlabelled),
    "adapt.unlabelled": lambda r: r.adapt.self_train,
    "adapt.target_unlabeled": lambda r: True,  # the target stage runs whenever it is set
    "augment.synonyms": lambda r: r.augment.method != "none",
}
SPLITS = ("train", "validation", "test")
#: a header longer than this is left to the run's reader
MAX_HEADER_BYTES = 4 << 20


def value_at(recipe: Recipe, key: str) -> Any:
    node: Any = recipe
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _missing(path: str, key: str) -> str | None:
    file = Path(path).expanduser()
    if file.is_file():
        return None
    if file.is_dir():
        return f"{path}: is a folder, not a file ({key}); give the data file itself"
    return f"{path}: file not found ({key}); check the path, relative to {Path.cwd()}"


def _header(path: Path, kind: str) -> list[str] | None:
    """The column names of a csv/tsv file's first line, or None when they cannot be read cheaply."""
    from tailorlm.data.load import Keys, open_text

    try:
        with open_text(path, Keys(), MAX_HEADER_BYTES, newline="") as stream:
            first = next(csv.reader(stream, delimiter="," if kind == "csv" else "\t"), None)
    except (UserError, OSError, UnicodeDecodeError, csv.Error):
        return None
    return [name.strip() for name in first] if first else None


def _columns_problem(recipe: Recipe, split: str, path: str) -> str | None:
    """The run's own column error (data/load.check_columns) for a csv/tsv file, read from its header alone."""
    from tailorlm.data.load import Keys, check_columns, detect_format
    from tailorlm.tasks import get_spec

    spec = get_spec(recipe.task)
    if spec.file_columns is None:
        return None
    text_key, label_key = spec.file_columns
    keys = Keys(file=f"data.{split}", text=text_key, label=label_key)
    try:
        kind = detect_format(Path(path), recipe.data.format, keys)
    except DataError as exc:
        return str(exc)
    header = _header(Path(path).expanduser(), kind) if kind in ("csv", "tsv") else None
    if header is None:
        return None
    groups = {group: "fairness.group_column" for group in recipe.fairness.group_columns}
    try:
        check_columns(Path(path), header, value_at(recipe, text_key), value_at(recipe, label_key), True, keys,
                      groups or None)
    except DataError as exc:
        return str(exc)
    return None


def file_problems(recipe: Recipe) -> list[str]:
    """Every input file that is missing, and every csv/tsv file without the task's columns."""
    problems = []
    for split in SPLITS:
        path = getattr(recipe.data, split)
        if path is None:
            continue
        problem = _missing(path, f"data.{split}") or _columns_problem(recipe, split, path)
        if problem:
            problems.append(problem)
    for key, read in OTHER_FILES.items():
        path = value_at(recipe, key)
        if isinstance(path, str) and path.strip() and read(recipe):
            problem = _missing(path, key)
            if problem:
                problems.append(problem)
    return problems


def model_problem(recipe: Recipe) -> str | None:
    """Why ``model.name`` (or the task's default) cannot be used here, or None (models/registry.check_model_name:
    file checks and, for an uncached hub id, a connectivity check of at most a second)."""
    from tailorlm.models.registry import check_model_name
    from tailorlm.tasks import get_spec

    try:
        name = get_spec(recipe.task).model_name(recipe.model.name)
        check_model_name(name, allow_pickle=recipe.model.allow_pickle)
    except UserError as exc:
        return str(exc)
    return None


def check_inputs(recipe: Recipe, files: bool = True) -> None:
    """One UserError naming every problem with the recipe's files (``files``) and model, before anything heavy is
    imported."""
    problems = file_problems(recipe) if files else []
    model = model_problem(recipe)
    problems += [model] if model else []
    if len(problems) == 1:
        raise DataError(problems[0])
    if problems:
        listed = "; ".join(f"({n}) {p}" for n, p in enumerate(problems, start=1))
        raise DataError(f"{len(problems)} problems before the run could start: {listed}")
