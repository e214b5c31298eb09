"""Per-example test predictions (``predictions.jsonl``): what paired tests, ``tailor compare`` and ``tailor review``
need and a single score hides.

A task's ``evaluate`` may return a ``predictions`` list (one dict per test row, in the split's order) and each of
its baselines a ``per_example`` list aligned with it. ``pop_predictions`` takes both out of the results (so
metrics.json stays small) and merges them into one row per example::

    {"id": "train.csv:12", "source": "train.csv", "row": 12, "text": "...", "label": "neg",
     "predicted": "pos", "confidence": 0.91, "baselines": {"linear_probe": {"predicted": "neg", ...}}}

Tasks scored per example rather than by label (QA) put ``{"scores": {"f1": ..., "exact_match": ...}}`` in the
rows instead of ``label``/``predicted``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tailorlm.errors import UserError
from tailorlm.evaluate.stats import has_entity_counts, is_labelled, significance
from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better

FILE = "predictions.jsonl"


def row_identity(frame: pd.DataFrame, i: int) -> dict[str, Any]:
    """id, source file and 1-based row of test example ``i``: how an expert's correction finds its row again."""
    source = str(frame.at[i, "source"]) if "source" in frame and pd.notna(frame.at[i, "source"]) else None
    row = int(frame.at[i, "row"]) if "row" in frame and pd.notna(frame.at[i, "row"]) else None
    ident = f"{Path(source).name}:{row}" if source is not None and row is not None else str(i + 1)
    return {"id": ident, "source": source, "row": row}


def label_rows(frame: pd.DataFrame, probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """Classification rows: gold label, predicted label and the model's probability of its prediction."""
    rows = frame.reset_index(drop=True)
    predicted = probs.argmax(axis=1)
    return [
        row_identity(rows, i) | {
            "text": str(rows.at[i, "text"]),
            "label": str(rows.at[i, "label"]) if "label" in rows and pd.notna(rows.at[i, "label"]) else None,
            "predicted": labels[int(predicted[i])],
            "confidence": round(float(probs[i, predicted[i]]), 6),
        }
        for i in range(len(rows))
    ]


def per_example_labels(probs: np.ndarray, labels: list[str]) -> list[dict[str, Any]]:
    """A baseline's per-example prediction, aligned with the test rows."""
    predicted = probs.argmax(axis=1)
    return [{"predicted": labels[int(p)], "confidence": round(float(probs[i, p]), 6)} for i, p in enumerate(predicted)]


def pop_predictions(evaluation: dict[str, Any], baselines: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Take the per-example lists out of the evaluation and baseline results; merge them into one row each."""
    rows = evaluation.pop("predictions", None)
    per_baseline = {name: result.pop("per_example") for name, result in baselines.items()
                    if isinstance(result, dict) and "per_example" in result}
    if not rows:
        return None
    for name, entries in per_baseline.items():
        if len(entries) != len(rows):
            continue
        for row, entry in zip(rows, entries, strict=True):
            row.setdefault("baselines", {})[name] = entry
    return rows


def main_metric(rows: list[dict[str, Any]], task: str) -> str:
    """The metric the interval and the tests are about: macro-F1 for labels, else the task's headline score."""
    if is_labelled(rows):
        return "f1_macro"
    scores = rows[0].get("scores", {}) if rows else {}
    wanted = TASK_MAIN_METRIC.get(task)
    if wanted == "f1" and has_entity_counts(scores):  # entity F1 from per-sentence counts (evaluate/stats.py)
        return wanted
    return wanted if wanted in scores else next(iter(scores), wanted or "f1")


def record_predictions(run_dir: Any, metrics: dict[str, Any], rows: list[dict[str, Any]] | None) -> None:
    """Write predictions.jsonl and put the bootstrap CI and the paired test vs the best reference baseline (not a
    floor) in ``metrics``."""
    if not rows:
        return
    write_jsonl(Path(run_dir.path) / FILE, rows)
    metric = main_metric(rows, str(metrics.get("task")))
    result = significance([rows], metric, metrics.get("labels") or [], greater_is_better(metric),
                          task=str(metrics.get("task")), baselines=metrics.get("baseline") or {})
    if result is not None:
        metrics["significance"] = result


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    from tailorlm.rundir import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, default=_plain) + "\n" for r in rows))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot be read as JSON Lines ({exc}); re-run the evaluation that wrote it") from None


def replicate_dirs(run_dir: Path, prefix: str = "seed-") -> list[Path]:
    """The per-seed (or per-fold) sub-runs of a multi-run directory, in seed order."""
    def order(p: Path) -> tuple[int, str]:
        tail = p.name.removeprefix(prefix)
        return (int(tail), "") if tail.lstrip("-").isdigit() else (1 << 30, p.name)

    return sorted((p for p in run_dir.glob(f"{prefix}*") if (p / FILE).is_file()), key=order)


def load_runs(run_dir: Path) -> list[list[dict[str, Any]]]:
    """The test predictions of a run: one list for a single run, one per seed for a ``--seeds`` run."""
    if (run_dir / FILE).is_file():
        return [read_jsonl(run_dir / FILE)]
    return [read_jsonl(d / FILE) for d in replicate_dirs(run_dir)]
