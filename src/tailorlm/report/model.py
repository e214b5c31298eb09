"""What a report is about, loaded once from the run directory: the systems measured, the baseline to beat, the
headline sentence.

``load_run`` reads the files a run leaves behind (``metrics.json``, and when present ``data_report.json``,
``log_history.json`` and ``recipe.resolved.yaml``); ``RunReport`` decides what they mean, so ``html``,
``markdown`` and the model card only lay it out and can never disagree about a number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailorlm.errors import UserError
from tailorlm.evaluate.floors import is_floor
from tailorlm.metric_names import (
    HEADLINE_METRIC,
    METRIC_COLUMNS,
    TASK_MAIN_METRIC,
    flat_metric_keys,
    greater_is_better,
    metric_name,
    prose_name,
    ranks_systems,
)
from tailorlm.report.format import finite, fmt, number, signed

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
            if not ranks_systems(key):  # the lowest ECE is no "best" model (metric_names.NOT_RANKED)
                continue
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
            if finite(e.get("loss")) and finite(e.get("step"))
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
                if key.startswith("eval_") and not key.endswith(skip) and finite(value) and key not in names:
                    names.append(key)
        return names


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
