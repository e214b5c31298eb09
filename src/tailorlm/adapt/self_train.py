"""Self-training (classification): the tuned model labels unlabelled domain text, and a student learns from both.

The tuned model (the teacher) predicts the unlabelled texts; those it is sure of (calibrated confidence at least
``adapt.threshold``) join the training rows as pseudo-labelled. A student is trained from the same starting point
(the pretrained or adapted body, same recipe, same seed) on train + pseudo, through the same ``encode`` / ``fit`` /
``calibrate`` / ``evaluate`` as the teacher. Pseudo-labels can be wrong in a way that compounds, so the student is
kept only when its validation main metric is not worse than the teacher's; the test split only reports.

Unlabelled texts that near-duplicate any train, validation or test text (the same fingerprint as data preparation's
leak check: case, punctuation, digits folded) are dropped and counted: a test text pseudo-labelled by the teacher
would be trained on, and the test score would no longer prove anything.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from transformers import set_seed

from tailorlm.adapt.corpus import filter_texts, fingerprints, read_domain_file
from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import DataError
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir
from tailorlm.tasks.base import EvalSettings, Task

#: pseudo-labelled rows of every round, for a person to read what the student was taught
PSEUDO_FILE = "pseudo_labels.jsonl"


@dataclass
class Unlabelled:
    """The cleaned, leak-free unlabelled texts and what reading them dropped."""

    source: str
    texts: list[str]
    counts: dict[str, int]


@dataclass
class Fitted:
    """One trained classifier with everything run.py reports about it (what a kept student replaces)."""

    model: Any
    outcome: Any  # train/trainer.py TrainOutcome
    calibration: dict[str, Any]
    evaluation: dict[str, Any]
    meta: dict[str, Any]


@dataclass
class Context:
    """What a student is trained from: the teacher's body, tokenizer, data and evaluation settings."""

    body: ResolvedModel
    tokenizer: Any
    data: PreparedData
    settings: EvalSettings
    run_dir: RunDir


@dataclass
class Outcome:
    """The model to keep and metrics.json's ``adapt.self_training``."""

    kept: Fitted
    record: dict[str, Any]


def read_unlabelled(recipe: Recipe, data: PreparedData) -> Unlabelled:
    """Read ``adapt.unlabelled`` (default ``adapt.text``) before any training, so a bad file fails in seconds."""
    cfg = recipe.adapt
    key = "adapt.unlabelled" if cfg.unlabelled else "adapt.text"
    source = cfg.unlabelled or cfg.text
    assert source is not None  # the recipe refuses self_train without either
    if len(data.validation) == 0:
        raise DataError("adapt.self_train needs validation rows to choose between teacher and student; "
                        "set data.validation or data.split.validation > 0")
    raw = read_domain_file(cfg, source, key, fix=f"or set adapt.self_train: false (read for {key})")
    labelled = fingerprints((data.train, data.validation, data.test), recipe.data.clean)
    texts, counts = filter_texts(raw, recipe.data.clean, labelled)
    if not texts:
        raise DataError(f"{source}: no unlabelled text left after dropping {counts['dropped_leaking']} texts matching "
                        f"train/validation/test texts ({key}); give texts that are not labelled already")
    return Unlabelled(source=str(source), texts=texts, counts={"rows": len(raw), **counts})


def select_pseudo(probs: np.ndarray, threshold: float, max_pseudo: int | None = None,
                  train_counts: np.ndarray | None = None) -> np.ndarray:
    """Row indices to pseudo-label, highest confidence first (ties: lower index first).

    Only rows whose top probability is at least ``threshold``. With ``max_pseudo``, label ``k`` gets at most
    ``floor(max_pseudo * train_counts[k] / sum(train_counts))`` rows: a teacher that favours one class cannot
    tilt the training set towards it.
    """
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    order = np.argsort(-confidence, kind="stable")
    order = order[confidence[order] >= threshold]
    if max_pseudo is None:
        return order
    counts = np.ones(probs.shape[1], dtype=np.int64) if train_counts is None else np.asarray(train_counts, np.int64)
    caps = (max_pseudo * counts) // max(int(counts.sum()), 1)  # integer arithmetic: exact shares
    taken = np.zeros(probs.shape[1], dtype=np.int64)
    chosen = []
    for i in order:
        if taken[predicted[i]] < caps[predicted[i]]:
            taken[predicted[i]] += 1
            chosen.append(i)
    return np.asarray(chosen, dtype=np.int64)


def _main_metric(recipe: Recipe, task: Task) -> tuple[str, bool]:
    """The validation metric that picks checkpoints also picks teacher or student, in the same direction."""
    from tailorlm.train.trainer import LOSS_METRICS

    metric = recipe.training.metric or task.default_metric
    greater = task.greater_is_better if metric == task.default_metric else metric not in LOSS_METRICS
    return metric.removeprefix("eval_"), greater


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _summary(fitted: Fitted) -> dict[str, Any]:
    from tailorlm.run import _best_validation

    return {"validation": _best_validation(fitted.outcome.log_history, fitted.outcome.best_step),
            "test": _scalars(fitted.evaluation["metrics"])}


def _pseudo_frame(unlabelled: Unlabelled, probs: np.ndarray, chosen: np.ndarray, labels: list[str],
                  round_no: int) -> pd.DataFrame:
    """Pseudo-labelled rows shaped like training rows, marked ``pseudo`` (with the teacher's confidence)."""
    return pd.DataFrame({
        "text": [unlabelled.texts[i] for i in chosen],
        "label": [labels[int(probs[i].argmax())] for i in chosen],
        "source": unlabelled.source,
        "row": [int(i) for i in chosen],
        "pseudo": True,
        "confidence": [round(float(probs[i].max()), 6) for i in chosen],
        "round": round_no,
    })


def _train_student(task: Task, recipe: Recipe, ctx: Context, pseudo: pd.DataFrame, teacher: Fitted,
                   console: Console) -> Fitted:
    """The teacher's recipe and starting point, on train + pseudo; the same fit, calibration and test evaluation."""
    from tailorlm.models.peft import apply_lora
    from tailorlm.train.trainer import fit

    data = copy.copy(ctx.data)
    marked = pseudo[["text", "label", "source", "row", "pseudo"]]
    data.train = pd.concat([ctx.data.train.assign(pseudo=False), marked], ignore_index=True)
    student_recipe = recipe.model_copy(deep=True)
    student_recipe.training.max_length = ctx.settings.max_length  # the teacher's, not re-derived from pseudo texts
    encoded = task.encode(student_recipe, data, ctx.tokenizer)
    task.after_encode(student_recipe, data, ctx.tokenizer, encoded)
    set_seed(recipe.training.seed)  # the same head initialisation as the teacher's
    model = task.build_model(ctx.body, recipe, ctx.data)
    if recipe.model.peft.method == "lora":
        model = apply_lora(model, recipe.model.peft, task.peft_task_type)
    scratch = ctx.run_dir.path / ".self-train-checkpoints"
    try:
        outcome = fit(task, model, ctx.tokenizer, encoded, data, student_recipe, scratch,
                      ctx.run_dir.path / ".self-train-log.json", console)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        (ctx.run_dir.path / ".self-train-log.json").unlink(missing_ok=True)
    calibration = task.calibrate(model, ctx.tokenizer, ctx.data, recipe, ctx.settings)
    meta = {k: v for k, v in teacher.meta.items() if k != "temperature"} | calibration.get("meta", {})
    evaluation = task.evaluate(model, ctx.tokenizer, ctx.data.test, meta, ctx.settings)
    return Fitted(model, outcome, calibration, evaluation, meta)


def _decide(metric: str, greater: bool, teacher: dict[str, Any], student: dict[str, Any]) -> tuple[bool, str]:
    """Keep the student when its validation metric is not worse; the reason in words."""
    t, s = teacher["validation"].get(metric), student["validation"].get(metric)
    if not isinstance(t, (int, float)) or not isinstance(s, (int, float)):
        return False, f"no validation {metric} to compare; the teacher stays"
    better = s >= t if greater else s <= t
    if better:
        return True, f"kept the student: validation {metric} {s:.4f} {'>=' if greater else '<='} teacher's {t:.4f}"
    return False, f"kept the teacher: student's validation {metric} {s:.4f} {'<' if greater else '>'} {t:.4f}"


def _write_pseudo(ctx: Context, frames: list[pd.DataFrame]) -> None:
    with (ctx.run_dir.path / PSEUDO_FILE).open("w", encoding="utf-8", newline="\n") as handle:
        for frame in frames:
            for row in frame[["round", "text", "label", "confidence"]].to_dict("records"):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def self_train(task: Task, recipe: Recipe, teacher: Fitted, ctx: Context, unlabelled: Unlabelled,
               console: Console) -> Outcome:
    """``adapt.rounds`` rounds of pseudo-label, retrain, compare; a round that keeps its teacher ends the loop
    (the next round would repeat it exactly)."""
    cfg, labels = recipe.adapt, list(ctx.data.labels)
    metric, greater = _main_metric(recipe, task)
    train_counts = ctx.data.train["label"].value_counts().reindex(labels, fill_value=0).to_numpy()
    console.print(f"self-training: {len(unlabelled.texts)} unlabelled texts from {unlabelled.source} "
                  f"({unlabelled.counts['dropped_leaking']} dropped as near-duplicates of train/validation/test texts)")
    kept, kept_round, rounds, frames = teacher, None, [], []
    for round_no in range(1, cfg.rounds + 1):
        probs = task.predict_proba(kept.model, ctx.tokenizer, unlabelled.texts, ctx.settings.max_length,
                                   ctx.settings.batch_size)
        chosen = select_pseudo(probs, cfg.threshold, cfg.max_pseudo, train_counts)
        pseudo = _pseudo_frame(unlabelled, probs, chosen, labels, round_no)
        per_label = {label: int((pseudo["label"] == label).sum()) for label in labels}
        entry: dict[str, Any] = {
            "round": round_no, "unlabelled_rows": unlabelled.counts["rows"], "candidates": len(unlabelled.texts),
            "dropped_leaking": unlabelled.counts["dropped_leaking"],
            "dropped_duplicate": unlabelled.counts["dropped_duplicate"],
            "dropped_empty": unlabelled.counts["dropped_empty"], "threshold": cfg.threshold,
            "max_pseudo": cfg.max_pseudo, "above_threshold": int((probs.max(axis=1) >= cfg.threshold).sum()),
            "pseudo_labelled": per_label, "pseudo_total": len(pseudo), "metric": metric, "teacher": _summary(kept),
        }
        if pseudo.empty:
            rounds.append(entry | {"student": None, "kept": "teacher",
                                   "reason": f"no unlabelled text reached confidence {cfg.threshold}"})
            console.print(f"self-training round {round_no}: {rounds[-1]['reason']}; the teacher stays")
            break
        console.print(f"self-training round {round_no}: {len(pseudo)} pseudo-labels at confidence >= "
                      f"{cfg.threshold} ({', '.join(f'{k} {v}' for k, v in per_label.items())}); training a student")
        frames.append(pseudo)
        student = _train_student(task, recipe, ctx, pseudo, teacher, console)
        entry["student"] = _summary(student)
        better, reason = _decide(metric, greater, entry["teacher"], entry["student"])
        rounds.append(entry | {"kept": "student" if better else "teacher", "reason": reason})
        console.print(f"self-training round {round_no}: {reason}")
        if not better:
            break
        kept, kept_round = student, round_no
    if frames:
        _write_pseudo(ctx, frames)
    record = {"source": unlabelled.source, "rounds": rounds, "kept": "teacher" if kept_round is None else "student",
              "kept_round": kept_round, "metric": metric,
              "pseudo_file": PSEUDO_FILE if frames else None}
    return Outcome(kept=kept, record=record)
