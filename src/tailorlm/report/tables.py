"""The report's table type and the generic builder for lists of records (samples, errors of other tasks).

Both renderers draw the same ``Table``s; cells are plain (unescaped) text plus a style, so escaping happens once,
in ``html`` and ``markdown``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tailorlm.metric_names import METRIC_TITLES
from tailorlm.report.format import finite, fmt, signed


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and its style (``best``, ``strong``, ``up``, ``down``, ``muted`` or none)."""

    text: str
    style: str = ""


@dataclass
class Table:
    """Headers, rows and which columns hold numbers (right-aligned in HTML and Markdown)."""

    headers: list[str]
    rows: list[list[Cell]]
    numeric: frozenset[int] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.rows)


def change_cell(delta: float | None) -> Cell:
    """A signed difference, styled as an improvement or a regression."""
    if delta is None:
        return Cell("—", "muted")
    return Cell(signed(delta), "up" if delta > 0 else "down" if delta < 0 else "")
#: Headings of the keys samples and errors usually carry; other keys are shown as written.
RECORD_TITLES: dict[str, str] = {
    "prompt": "Prompt",
    "source": "Source",
    "question": "Question",
    "context": "Context",
    "reference": "Reference",
    "gold": "Gold answer",
    "before": "Before tuning",
    "after": "After tuning",
    "predicted": "Predicted",
    "tokens": "Tokens",
    "tags": "Gold tags",
    "predicted_tags": "Predicted tags",
}


def records_table(records: list[dict[str, Any]], max_chars: int = 600, numbered: bool = True) -> Table:
    """Any list of flat records as a table: one column per key (in first-seen order), lists joined by spaces."""
    keys: list[str] = []
    for record in records:
        keys += [k for k in record if k not in keys and k != "row"]
    keys = [k for k in keys if any(record.get(k) is not None for record in records)]
    numeric = {k for k in keys if all(finite(r.get(k)) or r.get(k) is None for r in records)}
    rows = []
    for i, record in enumerate(records, start=1):
        row = [Cell(str(i), "muted")] if numbered else []
        row += [Cell(_record_value(record.get(k), max_chars), "" if record.get(k) not in (None, "") else "muted")
                for k in keys]
        rows.append(row)
    offset = 1 if numbered else 0
    titles = [RECORD_TITLES.get(k) or METRIC_TITLES.get(k) or k.replace("_", " ").capitalize() for k in keys]
    headers = (["#"] if numbered else []) + titles
    numeric_columns = {i + offset for i, k in enumerate(keys) if k in numeric} | ({0} if numbered else set())
    return Table(headers, rows, frozenset(numeric_columns))


def record_text_columns(table: Table) -> frozenset[int]:
    """Columns of a records table that hold free text (wrapped rather than kept on one line)."""
    return frozenset(i for i in range(len(table.headers)) if i not in table.numeric)


def _record_value(value: Any, max_chars: int) -> str:
    if value is None:
        return "—"
    if isinstance(value, str) and not value.strip():
        return "(empty output)"
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif finite(value):
        text = f"{value:,}" if isinstance(value, int) else fmt(value)
    elif isinstance(value, (list, tuple)):
        text = " ".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text[: max_chars - 1] + "…" if len(text) > max_chars else text
