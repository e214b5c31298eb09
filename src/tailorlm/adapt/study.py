"""``tailor adapt-study``: which domain-adaptation method helped, on the team's own source -> target pair.

Every method is an ordinary run of the same recipe with one setting changed, scored on the same target test
(``adapt.target_test`` replaces the source test split) with the same seeds:

- ``source_only``: the source training data alone, every adaptation off: the bar;
- ``dapt``: continued pretraining on the target text first (``adapt.pretrain`` with ``adapt.text``);
- ``dann``: domain-adversarial training (``adapt.adversarial``);
- ``weighting``: source rows weighted by how target-like they are (``adapt.instance_weighting``);
- ``self_train``: the tuned model pseudo-labels the target text and a student learns from it;
- ``augment``: token-edit copies of the source rows (the study compares it with source-only, so no gate run);
- ``ceiling``: trained on ``adapt.target_labeled``, when given: what labels from the target would buy.

With ``adapt.target_validation`` every method chooses its checkpoint (and stops early) on those target rows instead
of on source rows carved from the training file: on blog -> books the source validation chose checkpoints that
scored well on the source and lost on the target (docs/adaptation.md).

A cell (method, seed) is a complete run directory in ``output_dir/cells/<method>/seed-<s>/``; a finished cell is
not rerun, so a killed study continues where it stopped. A finished cell is kept only for the recipe and data it was
run with (``study_cell.json`` and the data files' hashes in ``run_info.json``): a study rerun with another setting
into the same folder stops with the keys that changed, rather than mixing old cells into a new table.

``study.json``/``.csv``/``.md`` hold per method the mean ± std of the main metric over seeds, the share of the
source-only -> ceiling gap it closed, the paired bootstrap test against source-only on the same target rows
(evaluate/stats.py) and the wall time.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from tailorlm.errors import RecipeError
from tailorlm.lifecycle import group_run
from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better
from tailorlm.recipe import Recipe, recipe_from_dict

#: every method off: a cell turns on only its own
ALL_OFF = {"adapt.pretrain": False, "adapt.adversarial": False, "adapt.instance_weighting": False,
           "adapt.self_train": False, "augment.method": "none"}
METHODS: dict[str, str] = {
    "source_only": "the source training data alone",
    "dapt": "continued pretraining on the target text (adapt.pretrain)",
    "dann": "domain-adversarial training (adapt.adversarial)",
    "weighting": "source rows weighted by target-likeness (adapt.instance_weighting)",
    "self_train": "pseudo-labels on the target text (adapt.self_train)",
    "augment": "token-edit copies of the source rows (augment.method: eda; the study is its gate)",
    "ceiling": "trained on the target's own labels (adapt.target_labeled)",
}
DEFAULT_METHODS = ("source_only", "dapt", "dann", "weighting", "self_train", "augment", "ceiling")
CELLS = "cells"
#: in each finished cell: the recipe the study asked for (before ``auto`` resolved it), compared on a rerun
CELL_REQUEST = "study_cell.json"


def method_overrides(recipe: Recipe, method: str) -> dict[str, Any]:
    """The dotted recipe keys a method's cells set, on top of every method off."""
    target = recipe.adapt.target_unlabeled
    return ALL_OFF | {
        "source_only": {},
        "dapt": {"adapt.pretrain": True, "adapt.text": target},
        "dann": {"adapt.adversarial": True},
        "weighting": {"adapt.instance_weighting": True},
        "self_train": {"adapt.self_train": True, "adapt.unlabelled": target},
        "augment": {"augment.method": "eda", "augment.gate": False},
        "ceiling": {"data.train": recipe.adapt.target_labeled, "data.validation": recipe.adapt.target_validation},
    }[method]


def cell_recipe(recipe: Recipe, method: str, seed: int) -> Recipe:
    """One cell's recipe: the method's keys, the target test as the test split, its seed and folder."""
    raw = recipe.model_dump(mode="json")
    selection = {"data.validation": recipe.adapt.target_validation} if recipe.adapt.target_validation else {}
    changes = selection | method_overrides(recipe, method) | {
        "data.test": recipe.adapt.target_test, "training.seed": seed, "training.seeds": 1,
        "output_dir": str(Path(recipe.output_dir) / CELLS / method / f"seed-{seed}"),
    }
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    return recipe_from_dict(raw, f"adapt-study cell {method}, seed {seed}")


def check_study(recipe: Recipe, methods: Sequence[str]) -> None:
    """What would make every cell fail or mean nothing, in one line before the first cell trains."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RecipeError(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    if not recipe.adapt.target_test:
        raise RecipeError("adapt-study scores every method on the target domain; set adapt.target_test (a file)")
    if not recipe.adapt.target_unlabeled and any(m != "source_only" and m != "ceiling" for m in methods):
        raise RecipeError("adapt-study: the adaptation methods need target text; set adapt.target_unlabeled")
    if "ceiling" in methods and not recipe.adapt.target_labeled:
        raise RecipeError("adapt-study: the ceiling trains on target labels; set adapt.target_labeled or drop "
                          "ceiling from --methods")


def is_finished(folder: Path) -> bool:
    status = folder / "status.json"
    try:
        return json.loads(status.read_text(encoding="utf-8")).get("status") == "finished" and (
            folder / "metrics.json").is_file()
    except (OSError, ValueError):
        return False


def cell_changes(folder: Path, cell: Recipe) -> list[str]:
    """Recipe keys and data files in which a finished cell differs from what the study asks now (empty: the same;
    ``output_dir`` is not compared, so a study folder that was moved or copied is still reused).

    A cell without ``study_cell.json`` (finished before the study recorded it, or not made by a study) counts as
    changed: nothing shows it was run with this recipe."""
    from tailorlm.evaluate.compare import flatten
    from tailorlm.provenance import changed_data_files, data_files

    try:
        stored = json.loads((folder / CELL_REQUEST).read_text(encoding="utf-8"))
        info = json.loads((folder / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return [f"{CELL_REQUEST} (missing or unreadable)"]
    before, now = flatten(stored), flatten(cell.model_dump(mode="json"))
    keys = [key for key in sorted(set(before) | set(now)) if key != "output_dir" and before.get(key) != now.get(key)]
    return keys + [f"{key} (file contents)" for key in changed_data_files(info.get("data_files") or {},
                                                                        data_files(cell))]


def require_same_cell(folder: Path, cell: Recipe) -> None:
    """Refuse to mix a finished cell run with other settings into this study's table (and never overwrite it)."""
    changed = cell_changes(folder, cell)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise RecipeError(f"{folder}: this finished cell was run with another recipe or data ({shown}); give the "
                          "study a new folder with --set output_dir=runs/NAME (finished cells are left as they are)")


def run_study(recipe: Recipe, console: Console, methods: Sequence[str] = DEFAULT_METHODS,
              seeds: int = 3) -> dict[str, Any]:
    """Every (method, seed) cell not finished yet, then the summary; returns study.json's content."""
    from tailorlm.run import run

    methods = [m for m in methods if m != "ceiling" or recipe.adapt.target_labeled]
    check_study(recipe, methods)
    seed_values = [recipe.training.seed + i for i in range(seeds)]
    cells = {(m, s): cell_recipe(recipe, m, s) for m in methods for s in seed_values}  # every bad key fails now
    with group_run(recipe, console, "adapt_study", methods=list(methods), seeds=seed_values) as opened:
        for (method, seed), cell in cells.items():
            folder = Path(cell.output_dir)
            if is_finished(folder):
                require_same_cell(folder, cell)
                console.print(f"adapt-study: {method}, seed {seed}: finished earlier with the same recipe, kept")
                continue
            console.print(f"[bold]adapt-study: {method}, seed {seed}[/] ({METHODS[method]})")
            run(cell, console)
            (folder / CELL_REQUEST).write_text(json.dumps(cell.model_dump(mode="json"), indent=1), encoding="utf-8")
        study = summarise(recipe, methods, seed_values)
        write_study(opened.run_dir.path, study)
    return study


# ------------------------------------------------------------------------------------------ summary


def _cell_results(recipe: Recipe, method: str, seeds: Sequence[int]) -> list[dict[str, Any]]:
    from tailorlm.evaluate.predictions import FILE, read_jsonl

    out = []
    for seed in seeds:
        folder = Path(recipe.output_dir) / CELLS / method / f"seed-{seed}"
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        rows = read_jsonl(folder / FILE) if (folder / FILE).is_file() else []
        out.append({"seed": seed, "metrics": metrics, "rows": rows})
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _method_row(method: str, cells: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    values = [float(c["metrics"]["tuned"][metric]) for c in cells]
    mean, std = _mean_std(values)
    wall = sum(float((c["metrics"].get("timings_s") or {}).get("total") or 0.0) for c in cells)
    return {"method": method, "what": METHODS[method], "metric": metric, "mean": round(mean, 6),
            "std": round(std, 6), "per_seed": values, "wall_s": round(wall, 1)}


def _versus(row: dict[str, Any], cells: list[dict[str, Any]], bar: dict[str, Any], bar_cells: list[dict[str, Any]],
            task: str, greater: bool) -> dict[str, Any]:
    """The method against source-only: difference, seed spread, and the paired test on the same target rows."""
    from tailorlm.evaluate.predictions import main_metric
    from tailorlm.evaluate.stats import paired_test

    diff = (row["mean"] - bar["mean"]) * (1 if greater else -1)  # > 0: better
    spread = max(row["std"], bar["std"])
    result: dict[str, Any] = {"difference": round(diff, 6), "beyond_seed_spread": diff > spread}
    runs_a, runs_b = [c["rows"] for c in cells], [c["rows"] for c in bar_cells]
    if all(runs_a) and all(runs_b):
        labels = cells[0]["metrics"].get("labels") or []
        test = paired_test(runs_a, runs_b, main_metric(runs_a[0], task), labels)
        if test is not None:
            result |= {"p_value": test["p_value"], "verdict": test["verdict"]}
    return result


def summarise(recipe: Recipe, methods: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """study.json: one row per method, each against source-only, and the share of the gap to the ceiling closed."""
    metric = TASK_MAIN_METRIC.get(recipe.task, "f1_macro")
    greater = greater_is_better(metric)
    cells = {m: _cell_results(recipe, m, seeds) for m in methods}
    rows = {m: _method_row(m, cells[m], metric) for m in methods}
    bar = rows.get("source_only")
    ceiling = rows.get("ceiling")
    for method, row in rows.items():
        if bar is not None and method != "source_only":
            row["vs_source_only"] = _versus(row, cells[method], bar, cells["source_only"], recipe.task, greater)
        if bar is not None and ceiling is not None and method not in ("source_only", "ceiling"):
            gap = ceiling["mean"] - bar["mean"]
            row["gap_closed"] = round((row["mean"] - bar["mean"]) / gap, 4) if abs(gap) > 1e-12 else None
    return {"task": recipe.task, "metric": metric, "greater_is_better": greater, "seeds": list(seeds),
            "target_test": recipe.adapt.target_test, "methods": list(rows.values()),
            "answer": answer(list(rows.values()))}


def answer(rows: list[dict[str, Any]]) -> str:
    """Which methods beat source-only by more than their seed spread, and which lost to it, in one sentence: a
    method that costs accuracy on the target is named, never left as a row to read."""
    compared = [r for r in rows if "vs_source_only" in r and r["method"] != "ceiling"]
    if not compared:
        return "no adaptation method was compared with source-only"
    helped = [r["method"] for r in compared if r["vs_source_only"]["beyond_seed_spread"]
              and r["vs_source_only"]["difference"] > 0]
    lost = [r["method"] for r in compared if losses(r)]
    said = f"beat source-only by more than the seed spread: {', '.join(helped)}" if helped else \
        "no adaptation method beat source-only by more than the seed spread"
    return said + (f"; worse than source-only on the target test (paired test at 5%): {', '.join(lost)}"
                   if lost else "")


def losses(row: dict[str, Any]) -> bool:
    """Below source-only, and significantly so on the paired test of the same target rows."""
    versus = row.get("vs_source_only") or {}
    p_value = versus.get("p_value")
    return versus.get("difference", 0) < 0 and isinstance(p_value, float) and p_value < 0.05


COLUMNS = ("method", "mean", "std", "difference", "p_value", "verdict", "gap_closed", "wall_s", "what")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    versus = row.get("vs_source_only") or {}
    return {k: row.get(k, versus.get(k, "")) for k in COLUMNS}


def write_study(folder: Path, study: dict[str, Any]) -> None:
    """study.json, study.csv, study.md and study.html (report/study.py) in the study's folder (atomic writes)."""
    from tailorlm.rundir import atomic_write_json, atomic_write_text

    atomic_write_json(folder / "study.json", study)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(_flat(r) for r in study["methods"])
    atomic_write_text(folder / "study.csv", buffer.getvalue())
    atomic_write_text(folder / "study.md", study_markdown(study))
    from tailorlm.report.study import render_study_html

    atomic_write_text(folder / "study.html", render_study_html(study))


def study_markdown(study: dict[str, Any]) -> str:
    head = (f"| method | {study['metric']} mean ± std | vs source-only | p | gap closed | wall s |\n"
            "|---|---|---|---|---|---|\n")
    lines = []
    for row in study["methods"]:
        versus = row.get("vs_source_only") or {}
        diff = f"{versus['difference']:+.4f}" if "difference" in versus else ""
        p_value = versus.get("p_value")
        p_value = ("< 0.001" if p_value < 0.001 else f"{p_value:.3f}") if isinstance(p_value, float) else ""
        gap = f"{row['gap_closed']:.0%}" if isinstance(row.get("gap_closed"), float) else ""
        lines.append(f"| {row['method']} | {row['mean']:.4f} ± {row['std']:.4f} | {diff} | {p_value} | {gap} | "
                     f"{row['wall_s']:.0f} |")
    return (f"# Adaptation study: {study['task']} on {study['target_test']}\n\n{study['answer']}.\n\n"
            f"Seeds: {', '.join(map(str, study['seeds']))}.\n\n" + head + "\n".join(lines) + "\n")
