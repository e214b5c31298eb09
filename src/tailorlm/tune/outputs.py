"""What a search leaves in its output_dir besides study.db and trials/: the files a reader opens first.

- ``trials.csv``: one row per trial (number, state, value, duration, one column per searched key, folder);
- ``tune.json``: the search settings, counts and the best trial;
- ``best_recipe.yaml``: the whole resolved recipe with the best values, the search section removed and
  ``output_dir`` set to ``<output_dir>/best``: ``tailor run best_recipe.yaml`` retrains the winner (same seed,
  same validation score) and measures the baselines the trials skipped;
- ``tune_report.html``: history, per-key slices and importances (``tune/report.py``).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial

from tailorlm.recipe import Recipe
from tailorlm.rundir import atomic_write_json, atomic_write_text
from tailorlm.tune.objective import trial_recipe
from tailorlm.tune.storage import STUDY_FILE, shown_url, storage_url


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial, or None while none has completed (Optuna raises instead)."""
    try:
        return study.best_trial
    except ValueError:
        return None


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state (``complete``, ``pruned``, ``fail``, ...), as tune.json and the report show them."""
    result: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        result[trial.state.name.lower()] = result.get(trial.state.name.lower(), 0) + 1
    return result


def trial_rows(study: optuna.Study, keys: list[str]) -> list[dict[str, Any]]:
    """Every trial as a flat row; a pruned trial's value is its last reported score (marked by its state)."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        value = trial.value
        if value is None and trial.intermediate_values:
            value = trial.intermediate_values[max(trial.intermediate_values)]
        duration = trial.duration.total_seconds() if trial.duration else None
        row: dict[str, Any] = {
            "number": trial.number,
            "state": trial.state.name.lower(),
            "value": value,
            "duration_s": round(duration, 2) if duration is not None else None,
        }
        row |= {key: trial.params.get(key) for key in keys}
        folder = trial.user_attrs.get("dir", "")
        # read from disk: a later best trial deletes the weights an earlier best had kept
        kept = bool(folder) and (Path(folder) / "model").is_dir()
        row |= {"dir": folder, "weights": "kept" if kept else "", "note": _note(trial)}
        rows.append(row)
    return rows


def _note(trial: FrozenTrial) -> str:
    """Why a trial is special: a retry, its error, or what set its values (--budget: the defaults, fixed epochs)."""
    attrs = trial.user_attrs
    parts = [f"retry of interrupted trial {attrs['retry_of']}"] if "retry_of" in attrs else []
    parts += [str(attrs[key]) for key in ("note", "error") if attrs.get(key)]
    return "; ".join(parts)


def rows_csv(rows: list[dict[str, Any]], keys: list[str]) -> str:
    columns = ["number", "state", "value", "duration_s", *keys, "dir", "weights", "note"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def best_recipe_text(recipe: Recipe, params: dict[str, Any], out: Path, header: str) -> str:
    """The full recipe with the best values; baselines as the base recipe has them."""
    best = trial_recipe(recipe, params, out / "best", baselines=True)
    raw = best.model_dump(mode="json")
    raw.pop("search", None)
    return header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def write_trials(study: optuna.Study, recipe: Recipe, out: Path) -> list[dict[str, Any]]:
    """trials.csv, rewritten after every trial so that a killed search still leaves an up-to-date table."""
    keys = list(recipe.search.space)
    rows = trial_rows(study, keys)
    atomic_write_text(out / "trials.csv", rows_csv(rows, keys))
    return rows


def write_outputs(study: optuna.Study, recipe: Recipe, out: Path, metric: str, direction: str) -> dict[str, Path]:
    """Write trials.csv, tune.json, best_recipe.yaml (when a trial completed) and tune_report.html."""
    from tailorlm.tune.report import render_tune_report

    keys = list(recipe.search.space)
    rows = write_trials(study, recipe, out)
    files = {"trials": out / "trials.csv", "summary": out / "tune.json"}
    best = best_trial(study)
    summary = {
        "method": recipe.search.method, "trials_target": recipe.search.trials, "metric": metric,
        "direction": direction, "pruner": recipe.search.pruner, "counts": counts(study),
        "space": {k: v.model_dump(mode="json", exclude_none=True) for k, v in recipe.search.space.items()},
        "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                           "dir": best.user_attrs.get("dir")},
        "storage": str(out / STUDY_FILE) if recipe.search.storage is None else shown_url(storage_url(recipe, out)),
        "study": recipe.search.study, "workers": recipe.search.workers,
    }
    atomic_write_json(files["summary"], summary)
    if best is not None:
        header = (f"# best of {summary['counts'].get('complete', 0)} complete trials of `tailor tune`: "
                  f"trial {best.number}, validation {metric} {best.value:.6g}\n"
                  f"# reproduce: tailor run {out / 'best_recipe.yaml'}\n")
        files["best_recipe"] = out / "best_recipe.yaml"
        atomic_write_text(files["best_recipe"], best_recipe_text(recipe, best.params, out, header))
    files["report"] = out / "tune_report.html"
    atomic_write_text(files["report"], render_tune_report(study, rows, summary, keys))
    return files
