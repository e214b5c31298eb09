"""The report's augmentation part of "Domain adaptation": what metrics.json holds under ``augment`` (augment/).

Both renderers draw the same lead sentence and table, so the HTML page and the Markdown twin agree; the lead says
which model the gate kept and why, since augmentation often does not help a pretrained transformer.
"""

from __future__ import annotations

from typing import Any

from tailorlm.report.format import count, fmt
from tailorlm.report.model import RunReport
from tailorlm.report.tables import Cell, Table


def _augment(report: RunReport) -> dict[str, Any]:
    entry = report.metrics.get("augment")
    return entry if isinstance(entry, dict) and entry.get("method") else {}


def has_augment(report: RunReport) -> bool:
    return bool(_augment(report))


#: each method in words, for the lead sentence
METHODS = {
    "eda": "token edits after Wei & Zou 2019",
    "mlm": "words masked and filled by a masked language model",
    "back_translation": "translated to a pivot language and back",
    "paraphrase": "rewritten by a generator in the target's style, filtered by length and similarity",
}


def _models(a: dict[str, Any]) -> str:
    models = a.get("models") if isinstance(a.get("models"), dict) else {}
    return ", ".join(f"{role} {name}" for role, name in models.items() if name)


def augment_lead(report: RunReport) -> str:
    """What was added to the training rows, and the gate's choice in its own words."""
    a = _augment(report)
    how = METHODS.get(str(a.get("method")), "")
    how = "; ".join(part for part in (how, _models(a)) if part)
    lead = (f"Augmentation ({a.get('method')}{f', {how}' if how else ''}) added {count(a.get('rows_added'))} "
            f"copies of training rows to the {count(a.get('train_rows_before'))} originals; "
            f"{count(a.get('dropped_leaking'))} copies were dropped because they matched a validation or test text.")
    gate = a.get("gate")
    if isinstance(gate, dict) and gate.get("reason"):
        lead += f" The gate trained the same recipe without augmentation too and {gate['reason']}."
    return lead


def augment_table(report: RunReport) -> Table:
    """The copies and the gate in numbers."""
    a = _augment(report)
    gate = a.get("gate") if isinstance(a.get("gate"), dict) else {}
    rows = [
        ("Copies added", count(a.get("rows_added"))),
        ("Dropped: matches a validation/test text", count(a.get("dropped_leaking"))),
        ("Dropped: edit changed nothing", count(a.get("dropped_unchanged"))),
        ("Dropped: repeats a training text", count(a.get("dropped_duplicate"))),
    ]
    filters = {"dropped_length": "Dropped: length filter", "dropped_similarity": "Dropped: similarity filter",
               "dropped_empty_pivot": "Dropped: empty pivot translation", "dropped_empty": "Dropped: empty output"}
    rows += [(label, count(a[key])) for key, label in filters.items() if key in a]
    if a.get("operations"):
        rows.append(("Edits", ", ".join(f"{k} {v}" for k, v in a["operations"].items())))
    if _models(a):
        rows.append(("Models", _models(a)))
    if gate:
        metric = gate.get("metric")
        rows += [(f"Validation {metric} with augmentation", fmt(gate.get("augmented"))),
                 (f"Validation {metric} without", fmt(gate.get("plain"))),
                 ("Kept", str(gate.get("kept")))]
    return Table(["", "Value"], [[Cell(name), Cell(value)] for name, value in rows], frozenset({1}))
