"""The data-quality report: what was read, what was dropped and why, and what the model will learn from.

Its keys are a contract with the HTML report (rendered elsewhere) and data_report.json; every value is plain
JSON (ints, floats, strings, lists, dicts).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from tailorlm.data.clean import REASONS

SPLITS = ("train", "validation", "test")
IMBALANCE_RATIO = 10
TINY_CLASS = 10


def length_stats(lengths: list[int]) -> dict[str, Any]:
    """min / mean / p50 / p95 / p99 / max of one split's lengths; {} for an empty split."""
    if not lengths:
        return {}
    values = np.asarray(lengths, dtype=float)
    p50, p95, p99 = (round(float(v)) for v in np.percentile(values, [50, 95, 99]))
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 2),
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "max": int(values.max()),
    }


def lengths_by_split(
    texts: dict[str, list[str]], count_tokens: Callable[[list[str]], list[int]] | None
) -> dict[str, dict[str, Any]]:
    """Length statistics per split, in tokens when a tokenizer's counter is given, else in whitespace words.

    All texts go through ``count_tokens`` in one call: tokenizers are much faster on one big batch.
    """
    everything = [t for name in SPLITS for t in texts[name]]
    counts = list(count_tokens(everything)) if count_tokens else [len(t.split()) for t in everything]
    stats: dict[str, dict[str, Any]] = {}
    start = 0
    for name in SPLITS:
        end = start + len(texts[name])
        stats[name] = length_stats([int(c) for c in counts[start:end]])
        start = end
    return stats


def label_distribution(frame: pd.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(frame["label"].value_counts().items())}


def class_warnings(distribution: dict[str, int], labels: list[str]) -> list[str]:
    """Imbalance (largest / smallest > 10) and tiny classes (< 10 training rows): both make scores shaky."""
    warnings: list[str] = []
    present = {label: distribution.get(label, 0) for label in labels}
    for label, count in present.items():
        if count == 0:
            warnings.append(f"class '{label}' has no training rows")
        elif count < TINY_CLASS:
            warnings.append(f"class '{label}' has only {count} training rows")
    nonzero = {k: v for k, v in present.items() if v > 0}
    if len(nonzero) >= 2:
        big = max(nonzero, key=lambda k: nonzero[k])
        small = min(nonzero, key=lambda k: nonzero[k])
        if nonzero[big] / nonzero[small] > IMBALANCE_RATIO:
            warnings.append(
                f"class imbalance: '{big}' has {nonzero[big]} training rows, '{small}' only {nonzero[small]} "
                f"({nonzero[big] / nonzero[small]:.0f}x); watch the per-class scores, not just accuracy"
            )
    return warnings


def removed_counts(rejects: list[dict[str, Any]], reasons: tuple[str, ...] = REASONS) -> dict[str, int]:
    """Rejects per reason; ``malformed_json`` counts as ``malformed_row`` (one key for unparseable rows)."""
    counts = Counter("malformed_row" if r["reason"] == "malformed_json" else r["reason"] for r in rejects)
    return {reason: int(counts.get(reason, 0)) for reason in reasons}


def unknown_labels(rejects: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    result: dict[str, dict[str, int]] = {"validation": {}, "test": {}}
    for r in rejects:
        if r["reason"] == "unknown_label" and r["split"] in result:
            bucket = result[r["split"]]
            bucket[str(r["label"])] = bucket.get(str(r["label"]), 0) + 1
    return {split: dict(sorted(counts.items())) for split, counts in result.items()}


def build_report(
    *,
    sources: dict[str, str | None],
    split_from_train: dict[str, bool],
    rows_read: dict[str, int],
    frames: dict[str, pd.DataFrame],
    rejects: list[dict[str, Any]],
    reasons: tuple[str, ...],
    stages: dict[str, int],
    lengths: dict[str, dict[str, Any]],
    length_unit: str,
) -> dict[str, Any]:
    """The report keys every task shares (see the module docstring for the contract); a task adds its own."""
    rejected = Counter(r["split"] for r in rejects)
    return {
        "sources": dict(sources),
        "split_from_train": dict(split_from_train),
        "rows_read": {name: int(rows_read.get(name, 0)) for name in SPLITS},
        "rows_kept": {name: len(frames[name]) for name in SPLITS},
        "rows_rejected": {name: int(rejected.get(name, 0)) for name in SPLITS},
        "removed": removed_counts(rejects, reasons),
        "stages": [{"stage": stage, "rows": int(rows)} for stage, rows in stages.items()],
        "length_unit": length_unit,
        "length": lengths,
    }
