"""Predictions from a saved model of any task, for inline inputs or a file; the CLI and the server share them.

Each task says which fields an input needs (``Task.input_fields``) and how to predict (``Task.predict``, which
reuses the task's evaluation code). This module only checks inputs and reads files: an inline input that cannot
be used (``--text ""``, a request without ``question``) is a one-line :class:`UserError`, while a bad row of an
``--input`` file becomes an ``{"row": N, "error": reason, "detail": ...}`` entry, so no row is dropped silently.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

from tailorlm.errors import DataError, UserError
from tailorlm.models.saved import LoadedModel, load_saved_model
from tailorlm.tasks import get_task
from tailorlm.tasks.base import InputProblem, Task


def checked_inputs(task: Task, inputs: list[Any], source: str = "input") -> list[dict[str, Any]]:
    """Every input normalised for ``task.predict``; the first bad one is a UserError naming it and the fix."""
    checked = []
    for number, item in enumerate(inputs, start=1):
        try:
            checked.append(task.normalize_input(item))
        except InputProblem as problem:
            fields = ", ".join(task.input_fields)
            where = f"{source} {number}" if len(inputs) > 1 else source
            raise UserError(f"{where}: {problem.detail} (a {task.name} model needs {fields})",
                            fix=f"give each input as {task.input_example()}") from None
    return checked


def predict_inputs(loaded: LoadedModel, inputs: list[Any], source: str = "input") -> list[dict[str, Any]]:
    """One prediction per input, in order, by the model's task; an input's ``id`` is echoed back when given."""
    task = get_task(loaded.task)
    checked = checked_inputs(task, inputs, source)
    if not checked:
        return []
    predictions = task.predict(loaded, checked)
    return [({"id": item["id"]} if isinstance(item, dict) and "id" in item else {}) | prediction
            for item, prediction in zip(inputs, predictions, strict=True)]


def partition_batch(task: Task, inputs: list[Any]) -> tuple[list[dict[str, Any] | None], list[int]]:
    """The error entries of a server batch's unusable inputs (``{"index": i, "error": reason, "detail": ...}``, its
    ``id`` echoed; None where the input is usable) and the indices of the usable ones. Only a batch with no usable
    input at all is a UserError (a 400), naming the first problem."""
    entries: list[dict[str, Any] | None] = [None] * len(inputs)
    good: list[int] = []
    first: tuple[int, InputProblem] | None = None
    for index, item in enumerate(inputs):
        echo = {"id": item["id"]} if isinstance(item, dict) and "id" in item else {}
        try:
            task.normalize_input(item)
            good.append(index)
        except InputProblem as problem:
            first = first or (index, problem)
            entries[index] = echo | {"index": index, "error": problem.reason, "detail": problem.detail}
    if not good:
        index, problem = first  # type: ignore[misc]  # no good input: at least one problem
        where = f"input {index + 1}" if len(inputs) > 1 else "input"
        raise UserError(f"{where}: {problem.detail} (a {task.name} model needs {', '.join(task.input_fields)})",
                        fix=f"give each input as {task.input_example()}")
    return entries, good


def predict_batch(loaded: LoadedModel, inputs: list[Any]) -> list[dict[str, Any]]:
    """The server's batch: a prediction per usable input and ``{"index": i, "error": reason, "detail": ...}`` for
    each other one (0-based, in order; its ``id`` echoed), as ``tailor predict --input`` keeps a bad row's error.
    Only a batch with no usable input at all is a UserError (a 400), naming the first problem."""
    task = get_task(loaded.task)
    entries, good = partition_batch(task, inputs)
    predictions = task.predict(loaded, [task.normalize_input(inputs[index]) for index in good])
    for index, prediction in zip(good, predictions, strict=True):
        item = inputs[index]
        entries[index] = ({"id": item["id"]} if "id" in item else {}) | prediction
    return [entry for entry in entries if entry is not None]


def text_inputs(task: Task, texts: list[str]) -> list[dict[str, str]]:
    """``--text`` values as inputs of the task's one text field (``prompt`` for generation)."""
    if len(task.input_fields) != 1:
        fields = ", ".join(task.input_fields)
        fix = ('pass --question "..." --context "...", or --input FILE with a column per field'
               if "question" in task.input_fields else f"pass --input FILE with columns {fields}")  # the qa options
        raise UserError(f"--text: a {task.name} model reads {fields}, not one text", fix=fix)
    return [{task.input_fields[0]: text} for text in texts]


def predict_file(loaded: LoadedModel, path: Path, text_column: str | None = None,
                 keep_columns: list[str] | None = None) -> list[dict[str, Any]]:
    """A prediction or an error entry per record of ``path`` (csv, tsv, jsonl, json, parquet, txt), in file order.

    ``text_column`` names the file's column that holds the task's one text field (``text`` or ``prompt``).
    ``keep_columns`` are copied from each record into its entry, so results join back to the file; None: ``id``
    and the task's input columns; ``["*"]``: every column; ``[]``: none.
    """
    from tailorlm.data.load import read_records

    task = get_task(loaded.task)
    single = task.input_fields[0] if len(task.input_fields) == 1 else None
    records, rejects = read_records(path, txt_field=single)
    originals = dict(records)
    if text_column and single and text_column != single:
        records = [(row, _renamed(record, text_column, single)) for row, record in records]
    _check_columns(path, task, [record for _, record in records], text_column)
    keep = _kept(task, keep_columns, text_column)
    entries: list[dict[str, Any]] = [{"row": r["row"], "error": r["reason"], "detail": r["detail"]} for r in rejects]
    good: list[tuple[int, dict[str, Any]]] = []
    for row, record in records:
        try:
            good.append((row, task.normalize_input(record)))
        except InputProblem as problem:
            entries.append({"row": row} | keep(originals[row]) | {"error": problem.reason, "detail": problem.detail})
    if not good:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(Counter(e["error"] for e in entries).items()))
        raise DataError(f"{path}: no usable rows ({reasons or 'none'}); every row needs "
                        f"{', '.join(task.input_fields)}")
    predictions = task.predict(loaded, [item for _, item in good])
    entries += [{"row": row} | keep(originals[row]) | prediction
                for (row, _), prediction in zip(good, predictions, strict=True)]
    return sorted(entries, key=lambda e: e["row"] if isinstance(e.get("row"), int) else 0)


def _kept(task: Task, columns: list[str] | None, text_column: str | None) -> Any:
    """The function copying the kept columns of a record (``--keep-columns``) into its output entry."""
    if columns is None:
        inputs = [*task.input_fields, *task.input_aliases, *([text_column] if text_column else [])]
        columns = ["id", *dict.fromkeys(inputs)]
    every = columns == ["*"]

    def keep(record: dict[str, Any]) -> dict[str, Any]:
        names = [str(k) for k in record] if every else columns
        return {name: _plain(record[name]) for name in names if name in record and name != "row"}

    return keep


def _plain(value: Any) -> Any:
    """A cell as strict JSON takes it: a missing Parquet/pandas cell (NaN) is null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _renamed(record: dict[str, Any], column: str, field: str) -> dict[str, Any]:
    if column not in record:
        return record
    return {k: v for k, v in record.items() if k not in (column, field)} | {field: record[column]}


def _check_columns(path: Path, task: Task, records: list[dict[str, Any]], text_column: str | None) -> None:
    """A field no record has is a file-level mistake (a wrong column name): one line, not an error per row."""
    present: dict[str, None] = {}
    for record in records:
        present.update(dict.fromkeys(map(str, record)))
    if text_column and records and text_column not in present and task.input_fields[0] not in present:
        raise DataError(f"{path}: no column '{text_column}' (--text-column); columns present: "
                        f"{', '.join(list(present)[:20]) or 'none'}; check the name")
    for name in task.input_fields:
        keys = [name, *(alias for alias, target in task.input_aliases.items() if target == name)]
        if records and not any(k in present for k in keys):
            hint = " or pass --text-column" if len(task.input_fields) == 1 else ""
            raise DataError(
                f"{path}: no column '{name}' (a {task.name} model needs {', '.join(task.input_fields)}); columns "
                f"present: {', '.join(list(present)[:20]) or 'none'}; rename the column{hint}"
            )


def predict_rows(
    model_dir: Path, texts: list[str] | None = None, input_file: Path | None = None,
    text_column: str | None = None, question: str | None = None, context: str | None = None,
    keep_columns: list[str] | None = None, task_name: str | None = None,
) -> list[dict[str, Any]]:
    """``tailor predict``: ``--text`` values, then ``--question/--context``, then the rows of ``--input`` (each
    with its row number, errors included). ``task_name``: the task of a multi-task model (``--task``)."""
    loaded = load_saved_model(model_dir, task=task_name)
    task = get_task(loaded.task)
    results: list[dict[str, Any]] = []
    if texts:
        results += predict_inputs(loaded, text_inputs(task, texts), source="--text")
    if question is not None or context is not None:
        if "question" not in task.input_fields:
            raise UserError(f"--question/--context: {model_dir} holds a {task.name} model, not a qa one",
                            fix="use --text or --input FILE")
        if question is None or context is None:
            raise UserError("--question and --context go together: a qa model finds the answer in the context",
                            fix="pass both")
        results += predict_inputs(loaded, [{"question": question, "context": context}], source="--question")
    if input_file is not None:
        results += predict_file(loaded, input_file, text_column, keep_columns)
    return results
