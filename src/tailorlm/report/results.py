"""The tables of the run's results: baselines vs the tuned model, the validation passes, per-label scores, the
errors and the before/after samples."""

from __future__ import annotations

from tailorlm.metric_names import metric_title
from tailorlm.report.format import count, finite, fmt, number
from tailorlm.report.model import FLOOR_SUFFIX, RunReport
from tailorlm.report.tables import Cell, Table, change_cell, records_table


def floor_note(report: RunReport) -> str:
    """The sentence under a comparison that lists floors: what they are and what the headline is measured against."""
    floors = report.measured_floors
    if not floors:
        return ""
    names = ", ".join(s.name.removesuffix(FLOOR_SUFFIX).lower() for s in floors)
    base = report.best_baseline
    against = (f"the gain in the headline is measured against the best reference baseline ({base.name.lower()})"
               if base else "no reference baseline was measured, so no gain over a real baseline is claimed")
    return (f"Rows marked (floor) ({names}) are lower bounds, not alternatives a user would pick; {against}.")


def comparison_table(report: RunReport) -> Table:
    """Baselines and the tuned model side by side, the best value of each column marked; floors say so."""
    best = report.best_per_column()
    columns = report.metric_columns
    rows = []
    for system in report.systems:
        row = [Cell(system.name, "best" if system.key == "tuned" and system.measured else "")]
        for key, _ in columns:
            value = number(system.metrics, key)
            style = "best" if best.get(key) == system.key else "" if system.measured else "muted"
            row.append(Cell(fmt(value), style))
        rows.append(row)
    headers = ["System", *(title for _, title in columns)]
    notes = [s.note for s in report.systems]
    if any(notes):  # a column of blanks would only add noise when every system was measured
        headers.append("Note")
        rows = [[*row, Cell(note, "muted")] for row, note in zip(rows, notes, strict=True)]
    return Table(headers, rows, frozenset(range(1, len(columns) + 1)))


def eval_table(report: RunReport) -> Table:
    """One row per validation pass; the checkpoint that was kept is marked."""
    names = report.eval_metric_names()
    best_step = report.train.get("best_step")
    rows = []
    for entry in report.eval_entries():
        style = "best" if best_step is not None and entry.get("step") == best_step else ""
        row = [Cell(fmt(entry.get("epoch"), 2), style), Cell(count(entry.get("step")), style),
               Cell(fmt(entry.get("eval_loss"), 4), style)]
        row += [Cell(fmt(entry.get(name)), style) for name in names]
        rows.append(row)
    headers = ["Epoch", "Step", "Validation loss", *(metric_title(n) for n in names)]
    return Table(headers, rows, frozenset(range(len(headers))))


def per_class_table(report: RunReport) -> Table:
    """Per-label precision, recall, F1 and support of the tuned model, with F1 against the best baseline."""
    tuned = (report.tuned or {}).get("per_class") or {}
    base = report.best_baseline
    base_pc = (base.metrics or {}).get("per_class") or {} if base else {}
    rows = []
    for label in report.labels:
        stats = tuned.get(label) or {}
        base_f1 = number(base_pc.get(label), "f1")
        f1 = number(stats, "f1")
        row = [Cell(label), Cell(count(stats.get("support"))), Cell(fmt(stats.get("precision"))),
               Cell(fmt(stats.get("recall"))), Cell(fmt(f1))]
        if base:
            delta = f1 - base_f1 if f1 is not None and base_f1 is not None else None
            row += [Cell(fmt(base_f1)), change_cell(delta)]
        rows.append(row)
    headers = ["Label", "Test texts", "Precision", "Recall", "F1"]
    if base:
        headers += [f"F1 {base.name.lower()}", "Change"]
    return Table(headers, rows, frozenset(range(1, len(headers))))


def errors_table(report: RunReport, max_chars: int = 600) -> Table:
    """The wrong predictions the model was surest of, text shortened for the page."""
    if not report.classification_errors:
        return records_table(report.errors, max_chars, numbered=True)
    rows = []
    for i, error in enumerate(report.errors, start=1):
        text = " ".join(str(error.get("text", "")).split())
        if len(text) > max_chars:
            text = text[: max_chars - 1] + "…"
        confidence = error.get("confidence")
        rows.append([
            Cell(str(i), "muted"), Cell(text), Cell(str(error.get("label", "—"))),
            Cell(str(error.get("predicted", "—"))), Cell(f"{confidence:.1%}" if finite(confidence) else "—"),
        ])
    return Table(["#", "Text", "True label", "Predicted", "Confidence"], rows, frozenset({0, 4}))


def samples_table(report: RunReport, max_chars: int = 600) -> Table:
    """Held-out examples: the input, the reference, and the model's output before and after tuning."""
    return records_table(report.samples, max_chars, numbered=False)
