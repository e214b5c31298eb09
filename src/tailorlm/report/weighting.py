"""The report's "Instance weighting" part of "Domain adaptation": metrics.json's ``adapt.instance_weighting``
(adapt/weighting.py) laid out, so a reader sees whether the weights did anything: the effective sample size, the
spread of the weights, and the source rows the target resembles most and least.

Both renderers draw the same lead sentence and tables, so the HTML page and the Markdown twin agree.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import count, fmt, percent
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table

#: characters of a source text shown in the most/least target-like table
TEXT_CHARS = 200


def _weighting(report: RunReport) -> dict[str, Any]:
    adapt = report.metrics.get("adapt")
    entry = adapt.get("instance_weighting") if isinstance(adapt, dict) else None
    return entry if isinstance(entry, dict) and entry.get("rows") else {}


def has_instance_weighting(report: RunReport) -> bool:
    return bool(_weighting(report))


def weighting_lead(report: RunReport) -> str:
    """What the weights are, how well the domains could be told apart, and what the weighting cost in rows."""
    w = _weighting(report)
    share = w.get("ess_share")
    share_text = f" ({percent(share)} of the rows)" if isinstance(share, (int, float)) else ""
    return (f"Instance weighting: a logistic-regression domain classifier on the pretrained model's frozen features "
            f"told the {count(w.get('rows'))} source training rows from the target texts with a held-out accuracy "
            f"of {fmt(w.get('domain_accuracy'))} (proxy A-distance {fmt(w.get('proxy_a_distance'))}; 0: the domains "
            f"look alike, 2: always told apart). Each source row was weighted by its out-of-fold density ratio "
            f"p/(1\u2212p), clipped at {fmt(w.get('clip'), 1)} ({count(w.get('clipped_rows'))} rows clipped) and "
            f"normalised to mean 1. The weighted rows are worth {fmt(w.get('effective_sample_size'), 1)} equally "
            f"weighted ones{share_text}: the lower, the fewer rows the model effectively learns from.")


def weighting_table(report: RunReport) -> Table:
    """The weights in numbers, and their histogram as bin ranges with counts."""
    w = _weighting(report)
    rows = [("Source rows", count(w.get("rows"))), ("Effective sample size", fmt(w.get("effective_sample_size"), 1)),
            ("Smallest weight", fmt(w.get("min"))), ("Largest weight", fmt(w.get("max"))),
            ("Clip (before normalising)", fmt(w.get("clip"), 1)), ("Rows clipped", count(w.get("clipped_rows")))]
    histogram = w.get("histogram") or {}
    bins, counts = histogram.get("bins") or [], histogram.get("counts") or []
    rows += [(f"Weights {fmt(low, 2)}–{fmt(high, 2)}", count(n))
             for low, high, n in zip(bins, bins[1:], counts, strict=False)]
    return Table(["", "Value"], [[Cell(name), Cell(value)] for name, value in rows], frozenset({1}))


def weighted_rows_table(report: RunReport) -> Table:
    """The most and least target-like source rows with their weights."""
    w = _weighting(report)
    rows = []
    for side, title in (("most_target_like", "most target-like"), ("least_target_like", "least target-like")):
        for entry in w.get(side) or []:
            text = str(entry.get("text", ""))
            text = text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"
            rows.append([Cell(title), Cell(fmt(entry.get("weight"))), Cell(text)])
    return Table(["Source row", "Weight", "Text"], rows, frozenset({1}))
