"""The report's "Would more labels help?" section: ``data_curve`` in metrics.json (evaluate/data_curve.py).

Both renderers share the answer, the lead and the table; the HTML page adds the curve.
"""

from __future__ import annotations

from typing import Any

from tailorlm.metric_names import metric_name
from tailorlm.report.format import count, fmt, signed
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table


def curve_of(report: RunReport) -> dict[str, Any]:
    entry = report.metrics.get("data_curve")
    return entry if isinstance(entry, dict) and entry.get("points") else {}


def has_data_curve(report: RunReport) -> bool:
    return bool(curve_of(report))


def data_curve_answer(report: RunReport) -> str:
    return str(curve_of(report).get("answer") or "")


def data_curve_lead(report: RunReport) -> str:
    curve = curve_of(report)
    return ("The same recipe was trained again on 25% and 50% of the training rows (same seed and validation and "
            "test splits; stratified by label for classification), and the test score was fitted with a power "
            f"law: {curve.get('model')}. Uncertainty: {curve.get('uncertainty') or 'none'}. Three sizes cannot "
            "show a curve that bends away from a power law, so read this as a direction, not a promise.")


def data_curve_table(report: RunReport) -> Table:
    """Measured sizes, then the extrapolated ones with their range."""
    curve = curve_of(report)
    title = metric_name(str(curve.get("metric")))
    rows = [[Cell(f"{p.get('fraction', 0):.0%}"), Cell(count(p.get("train_rows"))), Cell(fmt(p.get("metric"), 4)),
             Cell("measured", "muted"), Cell("")] for p in curve.get("points") or []]
    for e in curve.get("extrapolation") or []:
        interval = (f"{fmt(e['low'], 4)} to {fmt(e['high'], 4)}" if "low" in e else "—")
        rows.append([Cell(f"{e.get('scale')}x"), Cell(count(e.get("train_rows"))), Cell(fmt(e.get("metric"), 4)),
                     Cell(f"extrapolated, 95% range {interval}"), Cell(signed(float(e.get("gain") or 0.0), 4))])
    return Table(["Labels", "Training rows", f"Test {title}", "", "Change vs 100%"], rows, frozenset({1, 2, 4}))


def data_curve_chart_svg(report: RunReport) -> str:
    import numpy as np

    from tailorlm.report.charts import data_curve_chart

    curve = curve_of(report)
    points = [(float(p["train_rows"]), float(p["metric"])) for p in curve["points"]]
    ext = [(float(e["train_rows"]), float(e["metric"]), float(e.get("low", e["metric"])),
            float(e.get("high", e["metric"]))) for e in curve.get("extrapolation") or []]
    fit = curve.get("fit") or {}
    fitted: list[tuple[float, float]] = []
    if fit and points:  # the fitted slope through the measured 100% point, as the extrapolation uses it
        greater = curve.get("greater_is_better")
        top, now = points[-1]
        xs = np.geomspace(min(x for x, _ in points), max([x for x, *_ in ext] or [top]), 40)
        error = (fit["ceiling"] - now if greater else now) * (xs / top) ** (-fit["c"])
        ys = fit["ceiling"] - error if greater else error
        fitted = list(zip(xs.tolist(), ys.tolist(), strict=True))
    return data_curve_chart(points, fitted, ext, metric_name(str(curve.get("metric"))))
