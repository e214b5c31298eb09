"""The report's "Learning-rate range test" section: metrics.json's ``lr_find`` (train/lr_find.py), laid out.

Both renderers share the lead sentence and the table; the HTML page adds the loss-vs-rate chart.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import count, duration
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table


def lr_find_of(report: RunReport) -> dict[str, Any]:
    entry = report.metrics.get("lr_find")
    return entry if isinstance(entry, dict) and entry.get("lrs") else {}


def has_lr_find(report: RunReport) -> bool:
    return bool(lr_find_of(report))


def _rate(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "—"


def lr_find_lead(report: RunReport) -> str:
    """What was swept, the rule, and the rate it gave (or why it gave none)."""
    f = lr_find_of(report)
    settings = f.get("settings") or {}
    picked = (f"suggested {_rate(f.get('suggestion'))}, the rate this run trained with" if f.get("suggestion")
              else f"no suggestion ({f.get('note')}); the run used the auto rate instead")
    return (f"Before training, the learning rate was swept exponentially from {_rate(settings.get('start'))} to "
            f"{_rate(settings.get('end'))} over {count(f.get('steps'))} optimizer steps on training batches "
            f"(Smith 2017), and the model's weights were restored afterwards. Rule: {f.get('rule')}. Result: "
            f"{picked}.")


def lr_find_table(report: RunReport) -> Table:
    f = lr_find_of(report)
    rows = [
        ("Suggested rate", _rate(f.get("suggestion"))),
        ("Rate at the smoothed minimum", _rate(f.get("min_lr"))),
        ("Rate of steepest descent", _rate(f.get("steepest_lr"))),
        ("Minimum / 10 (the older rule)", _rate(f.get("min_over_ten"))),
        ("Steps run", count(f.get("steps"))),
        ("Batch size", count(f.get("batch_size"))),
        ("How it stopped", str(f.get("stopped") or "—")),
        ("Time", duration(f.get("seconds"))),
    ]
    return Table(["", "Value"], [[Cell(name), Cell(value)] for name, value in rows], frozenset({1}))


def lr_find_chart_svg(report: RunReport) -> str:
    from tailorlm.report.charts import lr_find_chart

    f = lr_find_of(report)
    return lr_find_chart(f["lrs"], f.get("losses") or [], f.get("smoothed") or [], f.get("suggestion"),
                         f.get("min_lr"))
