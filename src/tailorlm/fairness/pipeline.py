"""Where the bias audit meets the rest of tailorlm: two hooks in ``tailor run`` and the ``tailor audit`` command.

- :func:`apply_mitigation` (after tokenising): ``fairness.mitigation: reweight`` adds a ``weight`` column to the
  encoded training set; the trainer turns any such column into a weighted loss (train/resume.py).
- :func:`audit_run` (after the test evaluation): the by-group audit of the tuned model and of every baseline that
  predicted each test row, the counterfactual swaps, the weights used; what metrics.json holds under ``fairness``.
- :func:`audit_saved_model`: the same audit of a saved classifier on any labelled file (``tailor audit``).

fairlearn is imported only when a recipe or command asks for an audit.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from tailorlm.data.load import extra_column
from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import DataError, UserError
from tailorlm.recipe import FairnessConfig, Recipe


def _groups(frame: Any, column: str) -> list[str]:
    from tailorlm.fairness.audit import group_names

    return group_names(frame[extra_column(column)].tolist())


#: how an intersection's name and its groups join their columns' ("gender × race", "female × black")
JOIN = " × "


def groupings(frame: Any, cfg: FairnessConfig) -> dict[str, list[str]]:
    """Grouping name -> each row's group: every group column alone, then (``intersections``) all of them together."""
    columns = cfg.group_columns
    result = {column: _groups(frame, column) for column in columns}
    if len(columns) > 1 and cfg.intersections:
        result[JOIN.join(columns)] = [JOIN.join(values) for values in zip(*result.values(), strict=True)]
    return result


def _training_groups(frame: Any, cfg: FairnessConfig) -> list[str]:
    """The groups reweighing balances: the one column, or the intersection of several."""
    found = groupings(frame, cfg)
    return found[JOIN.join(cfg.group_columns)] if len(cfg.group_columns) > 1 else found[cfg.group_columns[0]]


def apply_mitigation(recipe: Recipe, data: PreparedData, encoded: Any) -> dict[str, Any] | None:
    """Reweighing: one weight per training row, as a ``weight`` column of ``encoded.train``; the cells for the report.

    Runs on every rank of a data-parallel run (each needs the column); the weights depend on the data alone.
    """
    cfg = recipe.fairness
    if cfg.mitigation != "reweight" or not cfg.group_column:
        return None
    from tailorlm.fairness.reweigh import reweighing
    from tailorlm.train.objective import WEIGHT_COLUMN

    weights, cells = reweighing(_training_groups(data.train, cfg), [str(v) for v in data.train["label"]])
    if len(weights) != len(encoded.train):
        raise RuntimeError(f"{len(weights)} weights for {len(encoded.train)} encoded training rows")
    train = encoded.train
    if WEIGHT_COLUMN in train.column_names:
        train = train.remove_columns(WEIGHT_COLUMN)
    encoded.train = train.add_column(WEIGHT_COLUMN, weights.tolist())
    return {"method": "reweight", "reference": "Kamiran & Calders 2012, reweighing",
            "formula": "w(g, y) = n_g * n_y / (n * n_gy)", "group_column": JOIN.join(cfg.group_columns),
            "train_rows": len(weights), "cells": cells}


def _families(cfg: FairnessConfig) -> list[dict[str, Any]]:
    from tailorlm.fairness.families import resolve_families

    return resolve_families(cfg.counterfactual, cfg.swap_families)


def _by_group(rows: list[dict[str, Any]], frame: Any, labels: list[str], cfg: FairnessConfig) -> dict[str, Any]:
    """The first grouping's audit at the top (as before several columns existed), every grouping under
    ``groupings`` when there are several; each row gets its ``group`` (and ``groups`` when several)."""
    from tailorlm.fairness.audit import audit_predictions

    found = groupings(frame, cfg)
    first = next(iter(found.values()))
    for i, row in enumerate(rows):
        row["group"] = first[i]
        if len(found) > 1:
            row["groups"] = {name: values[i] for name, values in found.items()}
    audits = [audit_predictions(rows, values, labels, name, cfg.min_group_size) | {"intersection": JOIN in name}
              for name, values in found.items()]
    return audits[0] | ({"groupings": audits} if len(audits) > 1 else {})


def _counterfactuals(texts: list[str], predict_proba: Any, labels: list[str], cfg: FairnessConfig,
                     ) -> dict[str, Any]:
    from tailorlm.fairness.counterfactual import counterfactual_audit

    audits = [counterfactual_audit(texts, predict_proba, labels, f["pairs"], f["name"])
              | {"axis": f["axis"], "source": f["source"]} for f in _families(cfg)]
    if not audits:
        return {}
    return {"counterfactual": audits[0], "counterfactual_families": audits}


def representation_of(splits: dict[str, Any], cfg: FairnessConfig) -> dict[str, Any]:
    """The representation report of named frames (train, validation, test; or the audited file)."""
    from tailorlm.fairness.representation import representation

    return representation({name: (list(frame["text"]), [str(v) for v in frame["label"]],
                                  groupings(frame, cfg) if cfg.group_columns else {})
                           for name, frame in splits.items() if len(frame)}, _families(cfg))


def audit(rows: list[dict[str, Any]], frame: Any, labels: list[str], cfg: FairnessConfig,
          predict_proba: Any, mitigation: dict[str, Any] | None = None) -> dict[str, Any]:
    """The fairness result for predictions ``rows`` of ``frame`` (same order): by group (each grouping),
    counterfactual families, weights.

    ``predict_proba(texts)`` is the model the counterfactual swaps are scored with. Each row gets its ``group``,
    so predictions.jsonl can be sliced by group later.
    """
    from tailorlm.fairness.summary import summarize

    result: dict[str, Any] = {}
    if cfg.group_columns:
        result |= _by_group(rows, frame, labels, cfg)
    result |= _counterfactuals(list(frame["text"]), predict_proba, labels, cfg)
    if mitigation:
        result["mitigation"] = mitigation
    result["summary"] = summarize(result)
    return result


def _postprocess(cfg: FairnessConfig, data: PreparedData, predict_proba: Any, labels: list[str],
                 seed: int) -> dict[str, Any]:
    """ThresholdOptimizer fitted on the validation split's scores, compared on the test split; its rule is saved
    with the model (stages/outputs.audit)."""
    from tailorlm.fairness.postprocess import threshold_optimizer

    column = cfg.group_columns[0]
    if len(data.validation) == 0:
        return {"method": "ThresholdOptimizer", "skipped": "no validation split to fit the thresholds on"}
    splits = []
    for frame in (data.validation, data.test):
        probs = np.asarray(predict_proba(list(frame["text"])))
        splits.append((probs[:, -1], [str(v) for v in frame["label"]], _groups(frame, column)))
    return threshold_optimizer(cfg.postprocess, splits[0], splits[1], labels, seed) | {"group_column": column}


def audit_run(recipe: Recipe, task: Any, model: Any, tokenizer: Any, data: PreparedData,
              predictions: list[dict[str, Any]] | None, settings: Any, mitigation: dict[str, Any] | None,
              ) -> dict[str, Any] | None:
    """metrics.json's ``fairness`` for a finished run, or None when the recipe asks for no audit."""
    cfg = recipe.fairness
    if not cfg.active and mitigation is None:
        return None
    if not predictions:
        return {"mitigation": mitigation} if mitigation else None

    def predict_proba(texts: list[str]) -> np.ndarray:
        return task.predict_proba(model, tokenizer, texts, settings.max_length, settings.batch_size)

    from tailorlm.fairness.gate import check_gate

    result = audit(predictions, data.test, list(data.labels), cfg, predict_proba, mitigation)
    result["representation"] = representation_of(
        {"train": data.train, "validation": data.validation, "test": data.test}, cfg)
    if cfg.postprocess != "none":
        result["postprocess"] = _postprocess(cfg, data, predict_proba, list(data.labels), recipe.training.seed)
    from tailorlm.fairness.summary import summarize

    result["summary"] = summarize(result)
    gate = check_gate(result, cfg)
    if gate is not None:
        result["gate"] = gate
    return result


# ------------------------------------------------------------------------------------------------ tailor audit


def parse_pairs(text: str) -> list[list[str]] | list[str] | str:
    """``--counterfactual``: ``none``, family names (``gender,race_names``), or pairs written ``he/she,mr/mrs``."""
    value = text.strip()
    items = [item.strip() for item in value.split(",") if item.strip()]
    if "/" not in value:
        return items[0].lower() if len(items) == 1 else [item.lower() for item in items] if items else "none"
    pairs = [[term.strip() for term in item.split("/")] for item in items]
    for pair in pairs:
        if len(pair) != 2:
            raise UserError(f"--counterfactual {text!r}: write family names (gender,race_names), none, or pairs "
                            "like he/she,mr/mrs")
    return pairs


def _classifier(model_dir: Path) -> Any:
    """The saved model, refused in one line unless its task can be audited (a spec with ``fairness``)."""
    from tailorlm.models.registry import read_model_meta
    from tailorlm.models.saved import load_saved_model, model_folder
    from tailorlm.tasks import TASK_SPECS

    folder = model_folder(Path(model_dir))
    task = read_model_meta(folder).get("task", "classification") if folder.is_dir() else "classification"
    spec = TASK_SPECS.get(task)
    if spec is None or not spec.has("fairness"):
        raise UserError(f"{model_dir}: holds a {task} model; tailor audit audits classification models")
    return load_saved_model(model_dir)


def audit_saved_model(model_dir: Path, data: Path, group_column: str | list[str],
                      counterfactual: list[list[str]] | list[str] | str = "none",
                      min_group_size: int = 10, text_column: str = "text", label_column: str = "label",
                      ) -> dict[str, Any]:
    """``tailor audit``: predict a labelled file with a saved classifier and audit it by ``group_column`` (one or
    several, with their intersection), with the counterfactual families and the file's representation report."""
    from pydantic import ValidationError

    from tailorlm.recipe import DataConfig
    from tailorlm.tasks import get_task
    from tailorlm.tasks.base import EvalSettings
    from tailorlm.tasks.classification.data import load_labelled_file

    try:
        cfg = FairnessConfig(group_column=group_column, counterfactual=counterfactual, min_group_size=min_group_size)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ").removeprefix("fairness.counterfactual: ")
        where = str(error["loc"][0]) if error["loc"] else "counterfactual" if "famil" in message else ""
        option = {"group_column": "--group-column", "counterfactual": "--counterfactual"}.get(where, "tailor audit")
        raise UserError(f"{option}: {message}") from None
    loaded = _classifier(model_dir)
    columns = DataConfig(train=str(data), labels=loaded.labels, text_column=text_column, label_column=label_column,
                         clean=loaded.clean)  # the run's data.clean: the texts as the model was trained on them
    frame, rejects = load_labelled_file(data, columns, split="eval", require_label=True,
                                        extra_columns=dict.fromkeys(cfg.group_columns, "--group-column"))
    if len(frame) == 0:
        raise DataError(f"{data}: no usable rows to audit ({len(rejects)} rejected); see --label-column and the labels "
                        f"of the model ({', '.join(loaded.labels)})")
    task = get_task(loaded.task)  # a task with "fairness" in its spec (checked by _classifier), so "proba" too
    settings = EvalSettings(loaded.max_length)
    evaluation = task.evaluate(loaded.model, loaded.tokenizer, frame, loaded.meta, settings)

    def predict_proba(texts: list[str]) -> np.ndarray:
        return task.predict_proba(loaded.model, loaded.tokenizer, texts, settings.max_length, settings.batch_size)

    result = audit(evaluation["predictions"], frame, loaded.labels, cfg, predict_proba)
    result["representation"] = representation_of({"file": frame}, cfg)
    reasons = Counter(str(r.get("reason")) for r in rejects)
    return {"model": str(loaded.path), "file": str(data), "rejected": len(rejects), "rejected_reasons": dict(reasons),
            "tuned": {k: v for k, v in evaluation["metrics"].items() if isinstance(v, (int, float))}} | result
