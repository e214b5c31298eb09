"""The run report: one HTML page (and a Markdown twin) proving how much fine-tuning helped on this data.

``render_report(run_dir)`` reads the files a run leaves behind (``metrics.json``, and when present
``data_report.json``, ``log_history.json`` and ``recipe.resolved.yaml``) and writes ``report.html`` and
``report.md`` next to them. It only reads files, so ``tailor report RUN_DIR`` can redraw an old run.

This module holds what both renderers share: loading the inputs and deciding what they mean (which systems
were measured, which baseline is the one to beat, the headline sentence). ``html`` and ``markdown`` only
lay that out, so the two reports can never disagree about a number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailorlm.errors import UserError
from tailorlm.evaluate.floors import is_floor
from tailorlm.metric_names import (
    HEADLINE_METRIC,
    METRIC_COLUMNS,
    METRIC_TITLES,
    TASK_MAIN_METRIC,
    flat_metric_keys,
    greater_is_better,
    metric_name,
    metric_title,
    prose_name,
)
from tailorlm.rundir import atomic_write_text

__all__ = ["Cell", "RunReport", "Table", "load_run", "render_report"]

#: (metrics.json key, display name) of every system the report compares, baselines first.
SYSTEM_NAMES: list[tuple[str, str]] = [
    ("zero_shot", "Zero-shot"),
    ("linear_probe", "Linear probe"),
    ("tuned", "Fine-tuned"),
]
#: Display names of the baselines other tasks measure (others are shown from their key).
SYSTEM_TITLES: dict[str, str] = dict(SYSTEM_NAMES) | {
    "pretrained": "Pretrained (before tuning)",
    "copy_source": "Copy the source (no model)",
}
#: Appended to the display name of a floor baseline (evaluate/floors.py), in every table that lists it.
FLOOR_SUFFIX = " (floor)"
#: Plain-language description of each reason a data row was removed.
REMOVAL_REASONS: dict[str, str] = {
    "malformed_row": "row could not be parsed",
    "empty_text": "text was empty",
    "too_short": "text was too short",
    "too_long": "text was too long",
    "missing_label": "label was missing",
    "unknown_label": "label not in the label set",
    "duplicate": "exact duplicate of another row",
    "near_duplicate": "near-duplicate of another row",
    "conflicting_label": "same text carried different labels",
    "leakage": "text also appears in another split",
    "context_leakage": "a question about a validation or test passage (qa)",
    "malformed_json": "record was not valid JSON",
    "empty_target": "target (the translation) was empty",
}


@dataclass
class System:
    """One row of the comparison: a baseline or the tuned model, measured or with the reason it was not."""

    key: str
    name: str
    metrics: dict[str, Any] | None
    note: str = ""
    floor: bool = False  # a lower bound (evaluate/floors.py): shown, never the bar the headline measures against

    @property
    def measured(self) -> bool:
        return self.metrics is not None


@dataclass
class RunReport:
    """Everything a report shows, loaded once from the run directory."""

    run_dir: Path
    metrics: dict[str, Any]
    data_report: dict[str, Any] | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)
    recipe_text: str | None = None

    # -------------------------------------------------------------------------------- basic facts
    @property
    def task(self) -> str:
        return str(self.metrics.get("task") or "classification")

    @property
    def is_classification(self) -> bool:
        """Classification's layout (fixed columns, zero-shot and probe rows, confusion matrix); others are generic."""
        tuned = self.metrics.get("tuned")
        return self.task == "classification" or (isinstance(tuned, dict) and HEADLINE_METRIC in tuned)

    @property
    def metric_columns(self) -> list[tuple[str, str]]:
        """(key, title) of the comparison: classification's fixed set, else every flat score the systems share."""
        if self.is_classification:
            return METRIC_COLUMNS
        keys = flat_metric_keys(self._raw_systems())
        main = self.main_metric
        ordered = [main, *(k for k in keys if k != main)] if main in keys else keys
        return [(key, metric_name(key)) for key in ordered]

    @property
    def main_metric(self) -> str:
        """The headline metric: the task's (bleu, f1, perplexity, ...) when measured, else its first score."""
        if self.is_classification:
            return HEADLINE_METRIC
        wanted = TASK_MAIN_METRIC.get(self.task)
        keys = flat_metric_keys(self._raw_systems())
        if wanted in keys or not keys:
            return wanted or "loss"
        return keys[0]

    @property
    def main_title(self) -> str:
        """The headline metric as prose names it ("macro-F1", "BLEU")."""
        return prose_name(self.main_metric)

    @property
    def lower_is_better(self) -> bool:
        return not greater_is_better(self.main_metric)

    def _raw_systems(self) -> list[Any]:
        """The tuned metrics first, then each baseline's, as found in metrics.json."""
        return [self.metrics.get("tuned"), *(self.metrics.get("baseline") or {}).values()]

    def _measured(self, raw: Any) -> bool:
        columns = METRIC_COLUMNS if self.is_classification else [(k, k) for k in flat_metric_keys([raw])]
        return _is_measured(raw, columns)

    @property
    def labels(self) -> list[str]:
        """Label order of the confusion matrix; the per-class table's order when ``labels`` is absent."""
        labels = self.metrics.get("labels")
        if labels:
            return [str(label) for label in labels]
        return [str(label) for label in (self.tuned or {}).get("per_class", {})]

    @property
    def tuned(self) -> dict[str, Any] | None:
        tuned = self.metrics.get("tuned")
        return tuned if self._measured(tuned) else None

    @property
    def train(self) -> dict[str, Any]:
        return self.metrics.get("train") or {}

    @property
    def model(self) -> dict[str, Any]:
        return self.metrics.get("model") or {}

    @property
    def verdict(self) -> dict[str, Any]:
        """metrics.json's verdict (evaluate/verdict.py): does the tuned model beat the best reference baseline?"""
        value = self.metrics.get("verdict")
        return value if isinstance(value, dict) else {}

    @property
    def data_sizes(self) -> dict[str, Any]:
        return self.metrics.get("data") or {}

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.metrics.get("errors") or [] if isinstance(e, dict)]

    @property
    def classification_errors(self) -> bool:
        """Errors shaped like classification's (text, true label, predicted, confidence), or none at all."""
        return all("text" in e and "label" in e for e in self.errors)

    @property
    def samples(self) -> list[dict[str, Any]]:
        """Held-out examples with the model's output before and after tuning (generation, translation, ...)."""
        return [s for s in self.metrics.get("samples") or [] if isinstance(s, dict)]

    # -------------------------------------------------------------------------------- comparison
    @property
    def systems(self) -> list[System]:
        """Every comparison row, including baselines that were disabled or skipped (so readers see why)."""
        baselines = self.metrics.get("baseline") or {}
        if not isinstance(baselines, dict):
            baselines = {}
        if self.is_classification:
            pairs = [(key, self.metrics.get("tuned") if key == "tuned" else baselines.get(key))
                     for key, _ in SYSTEM_NAMES]
        else:
            pairs = [*((key, raw) for key, raw in baselines.items() if key != "tuned"),
                     ("tuned", self.metrics.get("tuned"))]
        rows = []
        for key, raw in pairs:
            measured = self._measured(raw)
            note = _not_measured_note(key, raw) if not measured else ""
            floor = key != "tuned" and is_floor(key, self.task, raw)
            rows.append(System(key, system_name(key) + (FLOOR_SUFFIX if floor else ""), raw if measured else None,
                               note, floor))
        return rows

    @property
    def measured_baselines(self) -> list[System]:
        return [s for s in self.systems if s.key != "tuned" and s.measured]

    @property
    def measured_floors(self) -> list[System]:
        """Measured baselines that are lower bounds (a random head, a majority tag), not alternatives."""
        return [s for s in self.measured_baselines if s.floor]

    @property
    def best_baseline(self) -> System | None:
        """The *reference* baseline (not a floor) with the best headline metric (highest, or lowest for losses):
        the bar to clear. None when only floors, or nothing, were measured."""
        return self._best([s for s in self.measured_baselines if not s.floor])

    @property
    def best_floor(self) -> System | None:
        return self._best(self.measured_floors)

    def _best(self, systems: list[System]) -> System | None:
        main = self.main_metric
        scored = [s for s in systems if number(s.metrics, main) is not None]
        pick = min if self.lower_is_better else max
        return pick(scored, key=lambda s: number(s.metrics, main), default=None)  # type: ignore[arg-type,return-value]

    def best_per_column(self) -> dict[str, str]:
        """metric key -> key of the system with the best value, for highlighting (ties go to the first)."""
        best: dict[str, str] = {}
        for key, _ in self.metric_columns:
            values = [(s.key, number(s.metrics, key)) for s in self.systems if s.measured]
            values = [(k, v) for k, v in values if v is not None]
            if len(values) < 2:
                continue
            pick = max if greater_is_better(key) else min
            best[key] = pick(values, key=lambda kv: kv[1])[0]
        return best

    def headline(self) -> str:
        """One sentence a manager can quote: the headline metric before and after fine-tuning."""
        main, title = self.main_metric, self.main_title
        tuned = number(self.tuned, main)
        if tuned is None:
            return "The fine-tuned model was not evaluated on a test split, so there is no result to report."
        base = self.best_baseline
        if base is None and self.best_floor is not None:
            floor = self.best_floor
            return (
                f"The fine-tuned model reached {title} {fmt(tuned)} on the test split; only floors were measured "
                f"(best: {floor.name.lower()}, {fmt(number(floor.metrics, main))}), lower bounds rather than "
                "alternatives a user would pick, so this run cannot show a gain over a real baseline."
            )
        if base is None:
            return (
                f"The fine-tuned model reached {title} {fmt(tuned)} on the test split; no baseline was "
                "measured, so this run cannot show how much fine-tuning added."
            )
        before = number(base.metrics, main) or 0.0
        gain = tuned - before
        where = f"on the test split from {fmt(before)} (best baseline: {base.name.lower()}) to {fmt(tuned)}"
        worse = ": the baseline does better"
        if gain > 0:
            return f"Fine-tuning raised {title} {where} ({signed(gain)}){worse if self.lower_is_better else ''}."
        if gain < 0:
            better = " (lower is better)" if self.lower_is_better else worse
            return f"Fine-tuning lowered {title} {where} ({signed(gain)}){better}."
        return f"Fine-tuning left {title} unchanged {where.replace(' to ', ', still ')}."

    def gain(self) -> float | None:
        """Tuned minus best baseline on the headline metric, or None when either is missing."""
        base = self.best_baseline
        tuned = number(self.tuned, self.main_metric)
        if base is None or tuned is None:
            return None
        return tuned - (number(base.metrics, self.main_metric) or 0.0)

    def improvement(self) -> float | None:
        """The gain signed so that positive always means better (a drop in perplexity is an improvement)."""
        gain = self.gain()
        return None if gain is None else (-gain if self.lower_is_better else gain)

    def top_confusions(self, k: int = 5) -> list[tuple[str, str, int, int]]:
        """The k biggest off-diagonal cells of the tuned confusion matrix: (true, predicted, n, row total)."""
        matrix = (self.tuned or {}).get("confusion_matrix") or []
        labels = self.labels
        cells = []
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                if i != j and count and i < len(labels) and j < len(labels):
                    cells.append((labels[i], labels[j], int(count), int(sum(row))))
        return sorted(cells, key=lambda c: -c[2])[:k]

    # -------------------------------------------------------------------------------- learning curves
    def train_loss_points(self) -> list[tuple[float, float]]:
        """(step, training loss) from the Trainer's periodic logs."""
        return [
            (float(e["step"]), float(e["loss"]))
            for e in self.log_history
            if _finite(e.get("loss")) and _finite(e.get("step"))
        ]

    def eval_entries(self) -> list[dict[str, Any]]:
        """The Trainer's validation logs (one per evaluation), in order."""
        return [e for e in self.log_history if any(k.startswith("eval_") for k in e)]

    def eval_metric_names(self) -> list[str]:
        """Validation metrics worth plotting: the F1/accuracy family, not runtimes or throughput."""
        skip = ("runtime", "per_second", "loss", "epoch", "step")
        names: list[str] = []
        for entry in self.eval_entries():
            for key, value in entry.items():
                if key.startswith("eval_") and not key.endswith(skip) and _finite(value) and key not in names:
                    names.append(key)
        return names


# ------------------------------------------------------------------------------------------ tables
# Both renderers draw the same tables from these builders; cells are plain (unescaped) text plus a style.


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


def _cells(*values: str, style: str = "") -> list[Cell]:
    return [Cell(v, style) for v in values]


def change_cell(delta: float | None) -> Cell:
    """A signed difference, styled as an improvement or a regression."""
    if delta is None:
        return Cell("—", "muted")
    return Cell(signed(delta), "up" if delta > 0 else "down" if delta < 0 else "")


def facts(report: RunReport) -> list[tuple[str, str]]:
    """The run at a glance: model, task, data sizes, training time and effort."""
    model, train, sizes = report.model, report.train, report.data_sizes
    peft = str(model.get("peft") or "none")
    method = "full fine-tuning (all weights)" if peft == "none" else f"{peft} adapters"
    name = str(model.get("name") or "—")
    if model.get("base") and model.get("base") != name:
        name += f" ({model['base']})"
    data = " · ".join(f"{count(sizes.get(s))} {s}" for s in ("train", "validation", "test") if s in sizes)
    if _finite(sizes.get("rejected")):
        data += f" · {count(sizes['rejected'])} rows rejected"
    trainable, total = train.get("trainable_params"), train.get("total_params")
    best_step = train.get("best_step")
    share = f" ({percent(trainable / total)})" if _finite(trainable) and _finite(total) and total else ""
    epochs = train.get("epochs_run")
    task = str(report.metrics.get("task", "—"))
    rows = [
        ("Task", f"{task}, {len(report.labels)} labels" if report.is_classification or report.labels else task),
        ("Model", name),
        ("Method", method),
        ("Texts", data or "—"),
        ("Training time", duration(train.get("runtime_s"))
         + (f", {round(epochs, 2):g} epochs" if _finite(epochs) else "")
         + (" (stopped early)" if train.get("stopped_early") else "")),
        ("Parameters tuned", f"{count(trainable)} of {count(total)}{share}"),
        ("Kept checkpoint", f"step {count(best_step)}" if _finite(best_step) else "the last one"),
    ]
    validation = report.metrics.get("validation") or {}
    if _finite(validation.get(report.main_metric)):
        rows.append((f"Validation {report.main_title}", fmt(validation[report.main_metric])))
    elif not report.is_classification and _finite(validation.get("loss")):
        rows.append(("Validation loss", fmt(validation["loss"], 4)))
    from tailorlm.report.significance import significance_facts

    rows.extend(significance_facts(report.metrics))  # bootstrap CI, paired test, seeds' mean ± std
    rows.extend(calibration_facts(report.metrics))
    return rows


def calibration_facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The fitted softmax temperature and what it did to the test ECE (evaluate/calibration.py)."""
    calibration = metrics.get("calibration") or {}
    if calibration.get("skipped"):
        return [("Confidence calibration", str(calibration["skipped"]))]
    temperature = calibration.get("temperature")
    if not _finite(temperature):
        return []
    tuned = metrics.get("tuned") or {}
    text = (f"temperature {temperature:.3g} fitted on {count(calibration.get('validation_rows'))} validation rows "
            "(labels unchanged)")
    if _finite(tuned.get("ece_uncalibrated")) and _finite(tuned.get("ece")):
        text += f"; test ECE {tuned['ece_uncalibrated']:.3f} before, {tuned['ece']:.3f} after"
    return [("Confidence calibration", text)]


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
            Cell(str(error.get("predicted", "—"))), Cell(f"{confidence:.1%}" if _finite(confidence) else "—"),
        ])
    return Table(["#", "Text", "True label", "Predicted", "Confidence"], rows, frozenset({0, 4}))


def samples_table(report: RunReport, max_chars: int = 600) -> Table:
    """Held-out examples: the input, the reference, and the model's output before and after tuning."""
    return records_table(report.samples, max_chars, numbered=False)


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
    numeric = {k for k in keys if all(_finite(r.get(k)) or r.get(k) is None for r in records)}
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
    elif _finite(value):
        text = f"{value:,}" if isinstance(value, int) else fmt(value)
    elif isinstance(value, (list, tuple)):
        text = " ".join(str(v) for v in value)
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text[: max_chars - 1] + "…" if len(text) > max_chars else text


def sources_table(data: dict[str, Any]) -> Table:
    """Where each split came from and how many of its rows survived cleaning."""
    sources, split = data.get("sources") or {}, data.get("split_from_train") or {}
    read, kept, rejected = (data.get(k) or {} for k in ("rows_read", "rows_kept", "rows_rejected"))
    rows = []
    for name in ("train", "validation", "test"):
        if sources.get(name):
            origin = str(sources[name])
        elif split.get(name):
            origin = "split from train"
        else:
            origin = "—"
        rows.append([Cell(name), Cell(origin), Cell(count(read.get(name))), Cell(count(rejected.get(name))),
                     Cell(count(kept.get(name)))])
    return Table(["Split", "Source", "Rows read", "Rows rejected", "Rows kept"], rows, frozenset({2, 3, 4}))


def stages_table(data: dict[str, Any]) -> Table:
    """The row count after each cleaning stage, with how many rows that stage removed."""
    rows, previous = [], None
    for stage in data.get("stages") or []:
        rows_now = stage.get("rows")
        delta = rows_now - previous if _finite(rows_now) and _finite(previous) else None
        rows.append([Cell(str(stage.get("stage", "—"))), Cell(count(rows_now)),
                     Cell(f"{delta:+,}".replace("-", "\u2212") if delta else "—", "" if delta else "muted")])
        previous = rows_now
    return Table(["Stage", "Rows", "Change"], rows, frozenset({1, 2}))


def removed_table(data: dict[str, Any]) -> Table:
    """Rows removed, by reason, in plain words; reasons that removed nothing are left out."""
    removed = {k: v for k, v in (data.get("removed") or {}).items() if _finite(v) and v}
    rows = [[Cell(reason), Cell(REMOVAL_REASONS.get(reason, reason.replace("_", " "))), Cell(count(n))]
            for reason, n in sorted(removed.items(), key=lambda kv: -kv[1])]
    if rows:
        rows.append([Cell("total", "strong"), Cell(""), Cell(count(sum(removed.values())), "strong")])
    return Table(["Reason", "Meaning", "Rows"], rows, frozenset({2}))


def label_table(data: dict[str, Any]) -> Table:
    """Texts per label in each split, with each label's share of its split."""
    dist = data.get("label_distribution") or {}
    splits = [s for s in ("train", "validation", "test") if dist.get(s)]
    labels = list(data.get("labels") or [])
    for split in splits:
        labels += [label for label in dist[split] if label not in labels]
    totals = {s: sum(v for v in dist[s].values() if _finite(v)) for s in splits}
    rows = []
    for label in labels:
        row = [Cell(str(label))]
        for split in splits:
            n = dist[split].get(label, 0)
            share = f" ({n / totals[split]:.0%})" if totals[split] else ""
            row.append(Cell(f"{count(n)}{share}", "muted" if not n else ""))
        rows.append(row)
    return Table(["Label", *splits], rows, frozenset(range(1, len(splits) + 1)))


def length_table(data: dict[str, Any], key: str = "length") -> Table:
    """Text length per split (min, mean, percentiles, max) in the report's unit."""
    keys = ["min", "mean", "p50", "p95", "p99", "max"]
    rows = []
    lengths = data.get(key)
    for split, stats in (lengths if isinstance(lengths, dict) else {}).items():
        if stats:
            rows.append([Cell(split), *(Cell(_plain(stats.get(k))) for k in keys)])
    headers = ["Split", "Min", "Mean", "Median", "95th pct", "99th pct", "Max"]
    return Table(headers, rows, frozenset(range(1, len(headers))))


def other_length_tables(data: dict[str, Any]) -> list[tuple[str, Table]]:
    """Length tables besides the text's own, e.g. ``target_length`` of translation pairs: (title, table)."""
    tables = []
    for key in data:
        if key.endswith("_length") and isinstance(data[key], dict):
            table = length_table(data, key)
            if table:
                tables.append((key.removesuffix("_length").replace("_", " ").capitalize() + " length", table))
    return tables


def _plain(value: Any) -> str:
    """An integer as an integer, anything else with one decimal."""
    if not _finite(value):
        return "—"
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"


def input_overlap(data: dict[str, Any]) -> list[str]:
    """Held-out prompts (generation) or sources (translation) that training also has, with another answer: kept,
    since leakage is judged on whole examples, but a reader should know the test asks familiar questions."""
    lines = []
    for key, what in (("prompt_overlap", "prompt"), ("source_overlap", "source sentence")):
        for split, found in (data.get(key) or {}).items():
            rows, total = (found or {}).get("rows", 0), (found or {}).get("of", 0)
            if rows:
                lines.append(f"{split}: {count(rows)} of {count(total)} rows have a {what} that training also has "
                             "(with a different answer; kept, since only whole examples count as leakage)")
    return lines


def unknown_labels(data: dict[str, Any]) -> list[str]:
    """Sentences about labels seen in validation/test that training never had (those rows were dropped)."""
    lines = []
    for split, found in (data.get("unknown_labels") or {}).items():
        for label, n in (found or {}).items():
            lines.append(f"{split}: label '{label}' on {count(n)} rows is not in the training labels")
    return lines


# ------------------------------------------------------------------------------------------ helpers


def _is_measured(raw: Any, columns: list[tuple[str, str]] = METRIC_COLUMNS) -> bool:
    return isinstance(raw, dict) and "skipped" not in raw and any(k in raw for k, _ in columns)


def system_name(key: str) -> str:
    return SYSTEM_TITLES.get(key) or key.replace("_", " ").capitalize()


def _not_measured_note(key: str, raw: Any) -> str:
    """Why a system has no numbers, in words a reader can act on."""
    if _is_measured(raw):
        return ""
    if isinstance(raw, dict) and "skipped" in raw:
        return f"skipped: {raw['skipped']}"
    if key == "tuned":
        return "not evaluated"
    if raw is None:
        return "disabled in the recipe" if key in {"zero_shot", "linear_probe"} else "not measured"
    return "not measured"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(metrics: dict[str, Any] | None, key: str) -> float | None:
    """A finite metric value, or None: NaN (e.g. ECE on an empty split) must never win a comparison."""
    if not metrics:
        return None
    value = metrics.get(key)
    return float(value) if _finite(value) else None


def fmt(value: Any, digits: int = 3) -> str:
    """A metric as text; '—' for missing or NaN so tables never show 'nan' or 'None'."""
    return f"{value:.{digits}f}" if _finite(value) else "—"


def signed(value: float, digits: int = 3) -> str:
    """A difference with its sign, using a true minus so it reads well in prose."""
    text = f"{value:+.{digits}f}"
    return text.replace("-", "\u2212")


def percent(share: float) -> str:
    """A share as a percentage that never rounds a small non-zero share (LoRA's tuned weights) to 0.0%."""
    if 0 < share < 0.001:
        return f"{share:.3%}" if share >= 0.00001 else "<0.001%"
    return f"{share:.1%}"


def count(value: Any) -> str:
    """An integer with thousands separators, '—' when missing."""
    return f"{int(value):,}" if _finite(value) else "—"


def duration(seconds: Any) -> str:
    """Seconds as '2 min 0 s' / '1 h 3 min' / '12.4 s'."""
    if not _finite(seconds):
        return "—"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _read_json(path: Path, optional: bool = True) -> Any:
    """Parse a JSON file; a missing or unreadable optional file just means that section says so."""
    if not path.exists():
        if optional:
            return None
        raise UserError(f"{path}: not found; pass the output_dir of a finished `tailor run`")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if optional:
            return None
        raise UserError(f"{path}: cannot be read as JSON ({exc})") from None


def load_run(run_dir: Path) -> RunReport:
    """Read a run directory's files; only ``metrics.json`` is required."""
    run_dir = Path(run_dir)
    metrics = _read_json(run_dir / "metrics.json", optional=False)
    if not isinstance(metrics, dict):
        raise UserError(f"{run_dir / 'metrics.json'}: expected a JSON object")
    data_report = _read_json(run_dir / "data_report.json")
    log_history = _read_json(run_dir / "log_history.json")
    recipe = run_dir / "recipe.resolved.yaml"
    return RunReport(
        run_dir=run_dir,
        metrics=metrics,
        data_report=data_report if isinstance(data_report, dict) else None,
        log_history=[e for e in log_history if isinstance(e, dict)] if isinstance(log_history, list) else [],
        recipe_text=recipe.read_text(encoding="utf-8", errors="replace") if recipe.exists() else None,
    )


def render_report(run_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``run_dir`` (atomically) and return their paths."""
    # Imported here: matplotlib is only needed when a report is drawn, not whenever the package is imported.
    from tailorlm.report.html import render_html
    from tailorlm.report.markdown import render_markdown

    run_dir = Path(run_dir)
    report = load_run(run_dir)
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    atomic_write_text(html_path, render_html(report))
    atomic_write_text(md_path, render_markdown(report))
    return html_path, md_path
