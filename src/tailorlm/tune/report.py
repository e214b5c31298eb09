"""tune_report.html: did the search find anything, which keys mattered, and where to look next.

Drawn with the run report's pieces (stylesheet, tables, SVG charts embedded as data URIs; ``tailorlm.report``),
so it is one self-contained page like report.html. Three charts: the optimisation history (each trial's score
and the best so far), one slice per searched key (score against the key's value), and the keys' importances
(``optuna.importance.get_param_importances``, which needs a few complete trials with varied values).
"""

from __future__ import annotations

import time
import warnings
from html import escape
from typing import Any

import matplotlib
import numpy as np
import optuna
from matplotlib.ticker import MaxNLocator

from tailorlm import __version__
from tailorlm.report.charts import EVAL_COLOUR, MUTED, STYLE, TRAIN_COLOUR, figure, short, style_axes, to_svg
from tailorlm.report.format import finite, fmt
from tailorlm.report.html_blocks import empty, html_table, page, paragraph, safe_chart, section
from tailorlm.report.tables import Cell, Table

STATE_COLOURS = {"complete": TRAIN_COLOUR, "pruned": EVAL_COLOUR, "fail": "#c23b6b"}


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Parameter importances, or None when too few complete trials vary the keys for Optuna to tell."""
    try:
        with warnings.catch_warnings():  # "importances will be equal" on tiny studies: the chart says enough
            warnings.simplefilter("ignore")
            return optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None


# ------------------------------------------------------------------------------------------ charts


def history_chart(rows: list[dict[str, Any]], maximize: bool) -> str | None:
    """Each trial's score by trial number (pruned ones at their last score) and the best-so-far line."""
    points = [r for r in rows if finite(r["value"]) and r["state"] in STATE_COLOURS]
    if not points:
        return None
    with matplotlib.rc_context(STYLE):
        fig = figure(7.0, 3.2)
        ax = fig.subplots()
        for state, colour in STATE_COLOURS.items():
            mine = [r for r in points if r["state"] == state]
            if mine:
                ax.scatter([r["number"] for r in mine], [r["value"] for r in mine], color=colour, s=24,
                           label=state, zorder=3)
        complete = [r for r in points if r["state"] == "complete"]
        if complete:
            best = (np.maximum if maximize else np.minimum).accumulate([r["value"] for r in complete])
            ax.step([r["number"] for r in complete], best, where="post", color=MUTED, linewidth=1.4,
                    label="best so far")
        ax.set(title="Optimisation history", xlabel="trial", ylabel="validation score")
        style_axes(ax, "both")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # there is no trial 1.5
        ax.legend(loc="best")
        return to_svg(fig)


def slice_chart(rows: list[dict[str, Any]], keys: list[str], log_keys: set[str]) -> str | None:
    """One panel per searched key: score against the key's value, complete and pruned trials."""
    points = [r for r in rows if finite(r["value"]) and r["state"] in ("complete", "pruned")]
    if not points or not keys:
        return None
    with matplotlib.rc_context(STYLE):
        fig = figure(3.2 * len(keys) + 0.4, 3.0)
        axes = np.atleast_1d(fig.subplots(1, len(keys), sharey=True))
        for ax, key in zip(axes, keys, strict=True):
            values = [r[key] for r in points]
            numeric = all(finite(v) for v in values)
            xs: list[Any] = values if numeric else [str(v) for v in values]
            colours = [STATE_COLOURS[r["state"]] for r in points]
            ax.scatter(xs, [r["value"] for r in points], c=colours, s=24, zorder=3)
            if numeric and key in log_keys:
                ax.set_xscale("log")
            ax.set(title=short(key, 30), xlabel="value")
            style_axes(ax, "both")
        axes[0].set_ylabel("validation score")
        return to_svg(fig)


def importance_chart(scores: dict[str, float]) -> str:
    names = list(scores)[::-1]
    with matplotlib.rc_context(STYLE):
        fig = figure(7.0, 0.45 * len(names) + 1.2)
        ax = fig.subplots()
        bars = ax.barh([short(n, 30) for n in names], [scores[n] for n in names], color=TRAIN_COLOUR)
        ax.bar_label(bars, labels=[f"{scores[n]:.2f}" for n in names], padding=3, fontsize=8, color=MUTED)
        ax.set_xlim(0, 1.1)
        ax.set(title="Parameter importance", xlabel="share of the score's variation explained")
        style_axes(ax, "x")
        return to_svg(fig)


# ------------------------------------------------------------------------------------------ page


def trials_table(rows: list[dict[str, Any]], keys: list[str], best: int | None) -> Table:
    body = []
    for row in rows:
        style = "best" if row["number"] == best else ""
        cells = [Cell(str(row["number"]), style), Cell(row["state"], style), Cell(fmt(row["value"], 4), style),
                 Cell(fmt(row["duration_s"], 1))]
        cells += [Cell(f"{row[k]:.4g}" if isinstance(row[k], float) else str(row[k])) for k in keys]
        cells.append(Cell(row["note"], "muted"))
        body.append(cells)
    headers = ["Trial", "State", "Score", "Seconds", *keys, "Note"]
    return Table(headers, body, frozenset({0, 2, 3}))


def render_tune_report(study: optuna.Study, rows: list[dict[str, Any]], summary: dict[str, Any],
                       keys: list[str]) -> str:
    maximize = summary["direction"] == "maximize"
    best = summary["best"]
    log_keys = {k for k, spec in summary["space"].items() if spec.get("type") == "loguniform"}
    scores = importances(study)
    sections = [
        ("summary", "Best trial", _summary_html(summary)),
        ("history", "Optimisation history",
         safe_chart(lambda: history_chart(rows, maximize), "score of each trial and the best so far")),
        ("slices", "Score by value of each key",
         safe_chart(lambda: slice_chart(rows, keys, log_keys), "score against each searched key")),
        ("importance", "Which keys mattered", _importance_html(scores, summary["counts"].get("complete", 0))),
        ("trials", "All trials", html_table(trials_table(rows, keys, best["number"] if best else None))),
    ]
    body = "\n".join(section(sid, heading, html) for sid, heading, html in sections)
    lead = paragraph(f"{summary['method']} search, {counts_text(summary['counts'])}; objective: validation "
                     f"{summary['metric']} ({summary['direction']}). Scores are on the validation split; the test "
                     "split is for the final run.", "lead")
    footer = f"Generated by tailorlm {__version__} on {time.strftime('%Y-%m-%d %H:%M')} from {summary['storage']}."
    return page("tailorlm tune report", "tune report", "Hyperparameter search", lead,
                [(sid, heading) for sid, heading, _ in sections], body, footer)


#: how each Optuna state reads in a sentence
STATE_WORDS = {"complete": "complete", "pruned": "pruned", "fail": "failed", "running": "running",
               "waiting": "waiting"}


def counts_text(trial_counts: dict[str, int]) -> str:
    """``{"complete": 2, "pruned": 1}`` -> ``3 trials (2 complete, 1 pruned)``: what the terminal and report say."""
    total = sum(trial_counts.values())
    parts = [f"{n} {STATE_WORDS.get(state, state)}" for state, n in trial_counts.items() if n]
    return f"{total} trial{'s' if total != 1 else ''}" + (f" ({', '.join(parts)})" if parts else "")


#: below this many complete trials an importance estimate is mostly noise, and the report says so
FEW_TRIALS_FOR_IMPORTANCE = 10


def importance_caveat(complete: int) -> str | None:
    """The warning shown with importances estimated from few trials, or None when there are enough."""
    if complete >= FEW_TRIALS_FOR_IMPORTANCE:
        return None
    return (f"Estimated from {complete} complete trial{'s' if complete != 1 else ''}: with fewer than about "
            f"{FEW_TRIALS_FOR_IMPORTANCE}, these shares are mostly noise; treat them as a hint, not a finding.")


def _importance_html(scores: dict[str, float] | None, complete: int) -> str:
    if not scores:
        return empty("Not enough complete trials with different values to estimate importances.")
    caveat = importance_caveat(complete)
    chart = safe_chart(lambda: importance_chart(scores), "importance of each searched key")
    return (paragraph(caveat, "muted") if caveat else "") + chart


def _summary_html(summary: dict[str, Any]) -> str:
    best = summary["best"]
    if not best:
        return empty("No trial has completed yet.")
    facts = [("Trial", str(best["number"])), (f"Validation {summary['metric']}", fmt(best["value"], 4))]
    facts += [(key, f"{v:.4g}" if isinstance(v, float) else str(v)) for key, v in best["params"].items()]
    facts += [("Folder", str(best["dir"])), ("Reproduce", "tailor run best_recipe.yaml")]
    return '<dl class="facts">' + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts) + "</dl>"
