"""The report's "Domain shift" part of "Domain adaptation": metrics.json's ``adapt.shift`` (adapt/shift.py), the
same measures ``tailor shift`` prints for two files, here between the run's training rows and its target texts.

Both renderers draw the same lead sentence and table, so the HTML page and the Markdown twin agree.
"""

from __future__ import annotations

from typing import Any

from tailorlm.adapt.shift import summary_rows
from tailorlm.report.format import fmt, percent
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table

#: distinguishing words shown per side
WORDS_SHOWN = 8


def _shift(report: RunReport) -> dict[str, Any]:
    adapt = report.metrics.get("adapt")
    entry = adapt.get("shift") if isinstance(adapt, dict) else None
    return entry if isinstance(entry, dict) and entry.get("vocabulary") else {}


def has_shift(report: RunReport) -> bool:
    return bool(_shift(report))


def _words(rows: list[dict[str, Any]]) -> str:
    return ", ".join(str(row.get("word")) for row in rows[:WORDS_SHOWN]) or "none"


def shift_lead(report: RunReport) -> str:
    """How far apart the domains are, in the two numbers a reader checks first, and the words behind it."""
    s = _shift(report)
    emb, vocab, words = s.get("embeddings") or {}, s["vocabulary"], s.get("distinguishing_words") or {}
    return (f"The target texts against the training rows: {percent(vocab.get('target_oov_rate'))} of the target's "
            f"word tokens never occur in training, and a domain classifier on the pretrained model's frozen features "
            f"tells the two apart with a held-out accuracy of {fmt(emb.get('domain_accuracy'))} (proxy A-distance "
            f"{fmt(emb.get('proxy_a_distance'))}; 0: alike, 2: always told apart). Typical of the target: "
            f"{_words(words.get('target') or [])}; of the training rows: {_words(words.get('source') or [])}.")


def shift_table(report: RunReport) -> Table:
    rows = summary_rows(_shift(report))
    return Table(["Measure", "Training rows", "Target"],
                 [[Cell(name), Cell(source), Cell(target)] for name, source, target in rows], frozenset({1, 2}))
