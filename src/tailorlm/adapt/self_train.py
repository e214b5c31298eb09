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

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from tailorlm.adapt.corpus import filter_texts, fingerprints, read_domain_file
from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import DataError
from tailorlm.metric_names import greater_is_better
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir
from tailorlm.stages.context import Fitted
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
class Outcome:
    """The model to keep and metrics.json's ``adapt.self_training``."""

    kept: Fitted
    record: dict[str, Any]


#: trains a student on the training rows plus these pseudo-labelled ones, as the teacher was trained (stages/)
TrainStudent = Callable[[pd.DataFrame, Fitted], Fitted]


@dataclass
class Context:
    """What the rounds work with: the teacher's tokenizer, data and evaluation settings, and the run's trainer."""

    tokenizer: Any
    data: PreparedData
    settings: EvalSettings
    run_dir: RunDir
    train_student: TrainStudent


def read_unlabelled(recipe: Recipe, data: Any) -> Unlabelled:
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
    metric = recipe.training.metric or task.default_metric
    greater = greater_is_better(metric)
    return metric.removeprefix("eval_"), greater


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _summary(fitted: Fitted) -> dict[str, Any]:
    from tailorlm.train.trainer import best_validation

    return {"validation": best_validation(fitted.outcome.log_history, fitted.outcome.best_step),
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


def _decide(metric: str, greater: bool, teacher: dict[str, Any], student: dict[str, Any]) -> tuple[bool, str]:
    """Keep the student when its validation metric is not worse; the reason in words."""
    t, s = teacher["validation"].get(metric), student["validation"].get(metric)
    if not isinstance(t, (int, float)) or not isinstance(s, (int, float)):
        return False, f"no validation {metric} to compare; the teacher stays"
    better = s >= t if greater else s <= t
    if better:
        return True, f"kept the student: validation {metric} {s:.4f} {'>=' if greater else '<='} teacher's {t:.4f}"
    return False, f"kept the teacher: student's validation {metric} {s:.4f} {'<' if greater else '>'} {t:.4f}"


def _write_pseudo(run_dir: RunDir, frames: list[pd.DataFrame]) -> None:
    with (run_dir.path / PSEUDO_FILE).open("w", encoding="utf-8", newline="\n") as handle:
        for frame in frames:
            for row in frame[["round", "text", "label", "confidence"]].to_dict("records"):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def self_train(task: Task, recipe: Recipe, teacher: Fitted, ctx: Context, unlabelled: Unlabelled,
               console: Console) -> Outcome:
    """``adapt.rounds`` rounds of pseudo-label, retrain, compare; a round that keeps its teacher ends the loop
    (the next round would repeat it exactly). ``ctx.train_student`` is the run's own build-fit-evaluate."""
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
        student = ctx.train_student(pseudo, teacher)
        entry["student"] = _summary(student)
        better, reason = _decide(metric, greater, entry["teacher"], entry["student"])
        rounds.append(entry | {"kept": "student" if better else "teacher", "reason": reason})
        console.print(f"self-training round {round_no}: {reason}")
        if not better:
            break
        kept, kept_round = student, round_no
    if frames:
        _write_pseudo(ctx.run_dir, frames)
    record = {"source": unlabelled.source, "rounds": rounds, "kept": "teacher" if kept_round is None else "student",
              "kept_round": kept_round, "metric": metric,
              "pseudo_file": PSEUDO_FILE if frames else None}
    return Outcome(kept=kept, record=record)
