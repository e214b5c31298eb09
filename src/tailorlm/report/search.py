"""The report's "Search within the time budget" section: what metrics.json holds under ``search`` (tune/budget.py).

Only lays out what the budget run measured; shared by the HTML and Markdown reports.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import duration, fmt
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table

#: short column titles of the searched keys
KEY_TITLES = {"training.learning_rate": "Learning rate", "training.epochs": "Epochs",
              "training.batch_size": "Batch size", "model.peft.r": "LoRA r"}


def _search(report: RunReport) -> dict[str, Any]:
    search = report.metrics.get("search")
    return search if isinstance(search, dict) else {}


def has_search(report: RunReport) -> bool:
    return bool(_search(report))


def _scored(entry: Any, split: str) -> str:
    return fmt(entry.get(split), 4) if isinstance(entry, dict) else "—"


def search_lead(report: RunReport) -> str:
    """What was searched and how, what the defaults alone scored, the winner, and the time against the budget."""
    s = _search(report)
    metric = str(s.get("metric", "")).replace("_", " ")
    counts = ", ".join(f"{n} {state}" for state, n in (s.get("counts") or {}).items()) or "none"
    keys = ", ".join(KEY_TITLES.get(k, k).lower() for k in s.get("space") or {})
    defaults, best = s.get("defaults") or {}, s.get("best") or {}
    time_s = s.get("time_s") or {}
    share = s.get("wall_over_budget")
    winner = (f"The winner, trial {best.get('trial')}, scored validation {_scored(best, 'validation')}; this run "
              "retrained it with the baselines, and the results above are its."
              if best else "No trial completed, so this run trained the defaults.")
    return (f"tailor run --budget {s.get('budget')}: an automatic search over {keys}, Optuna's TPE sampler with "
            f"successive halving on the validation {metric}; trials in {s.get('dir')} ({counts}; "
            f"{s.get('trials_before', 0)} from earlier runs). Trial {defaults.get('trial', '—')} is the defaults "
            f"(what auto picks): validation {_scored(defaults, 'validation')}, test {_scored(defaults, 'test')}. "
            f"{winner} Time: {duration(s.get('wall_s'))} of the {duration(s.get('budget_s'))} budget"
            f"{f' ({share:.0%})' if isinstance(share, (int, float)) else ''}: search "
            f"{duration(time_s.get('search'))}, final run {duration(time_s.get('final_run'))} (estimated "
            f"{duration(time_s.get('final_run_estimate'))}). The search stopped: {s.get('stopped')}.")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "—" if value is None else str(value)


def search_table(report: RunReport) -> Table:
    """One row per trial: state, validation score, duration, the values tried; the winner in bold."""
    s = _search(report)
    keys = list(s.get("space") or {})
    best = (s.get("best") or {}).get("trial")
    rows = []
    for trial in s.get("trials") or []:
        style = "best" if trial.get("number") == best else ""
        cells = [Cell(str(trial.get("number")), style), Cell(str(trial.get("state"))),
                 Cell(fmt(trial.get("value"), 4), style), Cell(duration(trial.get("duration_s")))]
        rows.append(cells + [Cell(_value(trial.get(k))) for k in keys] + [Cell(str(trial.get("note") or ""))])
    metric = str(s.get("metric", "")).replace("_", " ")
    headers = ["Trial", "State", f"Validation {metric}", "Duration", *(KEY_TITLES.get(k, k) for k in keys), "Note"]
    return Table(headers, rows, frozenset({0, 2, 3, *range(4, 4 + len(keys))}))
