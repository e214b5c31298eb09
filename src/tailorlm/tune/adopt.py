"""A budget search's result without training the winner again: its trial's run directory, adopted.

Retraining the winner with the baselines on (what ``tailor run best_recipe.yaml`` does after ``tailor tune``)
costs as long as the trial did, so a budget that must keep room for it spends up to half its time waiting. It is
not needed: the baselines depend on the data, the split and the pretrained model, never on the trial's values, and
the defaults trial (trial 0, the only one that runs them) measured them on the same test rows (same recipe, same
seed, same split). So the winner's run directory is copied into ``output_dir``, the defaults trial's baselines are
merged into its metrics.json and predictions.jsonl, and the significance test, verdict, report and model card are
computed again from those files, as the run would have computed them. ``metrics.json`` ``adopted`` says which trial
the run is and where its baselines came from.

The winner is retrained instead when the baselines cannot be taken over: no complete defaults trial with them,
a trial without its model or predictions, or test rows that differ (tune/budget.py ``_final_run`` decides).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from tailorlm.evaluate.predictions import FILE as PREDICTIONS
from tailorlm.evaluate.predictions import read_jsonl, record_predictions
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir, atomic_write_json, atomic_write_text

#: what a trial's run directory must hold to become the result
NEEDED = ("metrics.json", PREDICTIONS)


def run_folder(trial: FrozenTrial) -> Path:
    return Path(trial.user_attrs.get("dir", ""))


def holds(folder: Path, names: tuple[str, ...] = NEEDED, model: bool = False) -> bool:
    """The run directory has these files (and its model/, if asked)."""
    return (not model or (folder / "model").is_dir()) and all((folder / name).is_file() for name in names)


def has_run(trial: FrozenTrial) -> bool:
    """The trial kept its model (it was the best when it ended) and wrote its metrics and predictions."""
    return holds(run_folder(trial), model=True)


def reusable(trial: FrozenTrial) -> bool:
    """The defaults trial ran with the baselines and, as the best so far, kept its model: its run is a final run."""
    return trial.user_attrs.get("role") == "defaults" and holds(run_folder(trial), ("metrics.json",), model=True)


def baseline_source(study: optuna.Study) -> Path | None:
    """The run directory of the complete defaults trial when it measured baselines with per-example predictions:
    any other winner can then be adopted rather than retrained."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        folder = run_folder(trial)
        if trial.user_attrs.get("role") != "defaults" or not holds(folder):
            continue
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        if metrics.get("baseline"):
            return folder
    return None


def adopt_trial(trial_dir: Path, output_dir: Path) -> dict[str, Any]:
    """Copy a trial's run directory into ``output_dir`` (beside ``search/``) as the budget's result; its resolved
    recipe names ``output_dir``, so rerunning it writes there. Returns its metrics.json."""
    for entry in trial_dir.iterdir():
        if entry.name in ("checkpoints", "search"):
            continue
        target = output_dir / entry.name
        if entry.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(entry, target)
        else:
            shutil.copy2(entry, target)
    resolved = output_dir / "recipe.resolved.yaml"
    if resolved.is_file():
        lines = [f"output_dir: {json.dumps(str(output_dir))}" if line.startswith("output_dir:") else line
                 for line in resolved.read_text(encoding="utf-8").splitlines()]
        resolved.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json.loads((output_dir / "metrics.json").read_text(encoding="utf-8"))


def merged_predictions(trial_dir: Path, source_dir: Path) -> list[dict[str, Any]] | None:
    """The trial's test predictions with the source's per-example baseline predictions beside them, or None when
    the two runs were not scored on the same test rows (then the baselines cannot be taken over)."""
    rows, references = read_jsonl(trial_dir / PREDICTIONS), read_jsonl(source_dir / PREDICTIONS)
    if [r.get("id") for r in rows] != [r.get("id") for r in references]:
        return None
    for row, reference in zip(rows, references, strict=True):
        row.pop("baselines", None)
        if reference.get("baselines"):
            row["baselines"] = reference["baselines"]
    return rows


def adopt_with_baselines(trial: FrozenTrial, source_dir: Path, final: Recipe) -> dict[str, Any] | None:
    """Make trial ``trial``'s run the result in ``final.output_dir`` with the baselines of ``source_dir`` (the
    defaults trial's run); None, with nothing written, when its test rows differ from the source's."""
    from tailorlm.evaluate.verdict import judge
    from tailorlm.report import render_report
    from tailorlm.serve.card import write_model_card
    from tailorlm.stages.outputs import ordered

    trial_dir, output_dir = run_folder(trial), Path(final.output_dir)
    rows = merged_predictions(trial_dir, source_dir)
    if rows is None:
        return None
    metrics = adopt_trial(trial_dir, output_dir)
    source = json.loads((source_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics["baseline"] = source["baseline"]
    metrics.pop("significance", None)
    record_predictions(RunDir(output_dir), metrics, rows)  # predictions.jsonl again, and the paired test
    metrics["verdict"] = judge(metrics, final).as_dict()
    metrics["adopted"] = {"trial": trial.number, "from": str(trial_dir), "baselines_from": str(source_dir),
                          "why": "the winner's own run, with the baselines the defaults trial measured on the same "
                                 "test rows (not retrained)"}
    atomic_write_json(output_dir / "metrics.json", ordered(metrics))
    _resolved_with_baselines(output_dir / "recipe.resolved.yaml", final)
    render_report(output_dir)
    write_model_card(output_dir)
    return metrics


def _resolved_with_baselines(path: Path, final: Recipe) -> None:
    """The adopted trial's resolved recipe (its concrete ``auto`` values and header kept) with the final recipe's
    baseline section: rerunning it reproduces the result, baselines included."""
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    raw = yaml.safe_load(text) or {}
    raw["baseline"] = final.model_dump(mode="json")["baseline"]
    atomic_write_text(path, header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
