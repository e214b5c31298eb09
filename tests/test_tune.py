"""`tailor tune`: every method finishes, outputs are written, the best recipe reproduces, a killed search resumes.

Trials use the tiny random BERT, ~60 rows and one epoch: the point is the machinery, not the scores. The search
metric is the validation loss where scores must differ between trials (a random tiny model often ties on F1).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from rich.console import Console

from tailorlm.errors import RecipeError
from tailorlm.recipe import load_recipe
from tailorlm.tune.objective import Objective
from tailorlm.tune.space import check_space, override
from tests.conftest import sentiment_rows, write_recipe
from tests.helpers import run_cli

SPACE = """
  space:
    training.learning_rate: {type: loguniform, low: 1.0e-4, high: 3.0e-3, grid: [3.0e-4, 1.0e-3, 3.0e-3]}
    training.weight_decay: {type: categorical, choices: [0.0, 0.1]}
"""


def tune_recipe(folder: Path, model_dir: Path, search: str = "", rows: int = 60, evals: int = 1) -> Path:
    data = folder / "reviews.csv"
    pd.DataFrame(sentiment_rows(rows)).to_csv(data, index=False)
    return write_recipe(folder / "tune.yaml", f"""
task: classification
output_dir: {folder / "tune"}
model: {{name: {model_dir}}}
data:
  train: {data}
  split: {{validation: 0.25, test: 0.2}}
training: {{epochs: 1, batch_size: 16, learning_rate: 1.0e-3, early_stopping_patience: null, evals_per_epoch: {evals}}}
search:
  pruner: none
{search or SPACE}
""")


def read_trials(out: Path) -> list[dict[str, str]]:
    with (out / "trials.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


KEYS = ("training.learning_rate", "training.weight_decay")


@pytest.mark.parametrize("method", ["grid", "random", "bayes"])
def test_each_method_writes_trials_and_best_recipe(tmp_path: Path, tiny_model_dir: Path, method: str) -> None:
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    code, stdout, stderr = run_cli(["tune", str(recipe), "--method", method, "--trials", "2", "--metric", "loss"])
    assert code == 0, stderr
    out = tmp_path / "tune"
    trials = read_trials(out)
    assert [t["state"] for t in trials] == ["complete", "complete"]
    assert all(float(t["value"]) > 0 for t in trials)
    summary = json.loads((out / "tune.json").read_text())
    assert summary["method"] == method and summary["direction"] == "minimize"  # loss: inferred
    best = load_recipe(out / "best_recipe.yaml")
    assert best.output_dir == str(out / "best")
    assert best.search.space == {}  # the search section is gone
    assert best.training.learning_rate == pytest.approx(summary["best"]["params"]["training.learning_rate"])
    assert (out / "tune_report.html").read_text().count("data:image/svg+xml;base64") >= 2
    kept = [t for t in trials if (Path(t["dir"]) / "model").exists()]
    assert len(kept) == 1 and kept[0]["number"] == str(summary["best"]["number"])  # only the best keeps weights
    assert [t["number"] for t in trials if t["weights"] == "kept"] == [kept[0]["number"]]  # the CSV agrees
    caches = [json.loads((Path(t["dir"]) / "metrics.json").read_text())["data"]["tokenize_cache"] for t in trials]
    assert caches[1] == "hit"  # the second trial trains on the tokenised splits of the first (or of an earlier test)
    assert "best: trial" in stdout
    said = " ".join(stdout.split())
    assert "2 trials (2 complete)" in said and "{'" not in said  # human words, not a Python dict
    assert "mostly noise" in said  # 2 trials cannot rank parameters: the summary says so
    html = (out / "tune_report.html").read_text()
    assert "2 trials (2 complete)" in html and "mostly noise" in html and "{&#x27;" not in html


def test_best_recipe_reproduces_the_best_trial(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    code, _, stderr = run_cli(["tune", str(recipe), "--method", "random", "--trials", "2", "--metric", "loss"])
    assert code == 0, stderr
    out = tmp_path / "tune"
    summary = json.loads((out / "tune.json").read_text())
    code, _, stderr = run_cli(["run", str(out / "best_recipe.yaml")])
    assert code == 0, stderr
    rerun = json.loads((out / "best" / "metrics.json").read_text())
    assert rerun["validation"]["loss"] == pytest.approx(summary["best"]["value"], abs=0.005)
    assert rerun["baseline"]  # the final run measures the baselines the trials skipped


def test_pruned_trial_is_recorded_as_pruned(tmp_path: Path, tiny_model_dir: Path) -> None:
    """A pruner that always prunes: the trial stops at its first (non-final) evaluation and says so."""

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return True

    recipe = load_recipe(tune_recipe(tmp_path, tiny_model_dir, evals=2))
    study = optuna.create_study(direction="minimize", pruner=AlwaysPrune())
    study.optimize(Objective(recipe, tmp_path / "tune", "loss", False, Console(quiet=True)), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    status = json.loads((tmp_path / "tune" / "trials" / "trial-000" / "status.json").read_text())
    assert status["status"] == "pruned" and "pruned at step" in status["reason"]
    assert not (tmp_path / "tune" / "trials" / "trial-000" / "checkpoints").exists()


def test_killed_search_resumes_without_repeating_trials(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SIGKILL while trial 3 of 6 runs, run again: exactly 6 finished trials, each grid point once."""
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    out = tmp_path / "tune"
    command = [sys.executable, "-m", "tailorlm", "tune", str(recipe), "--method", "grid", "--trials", "6"]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 240
        while not (out / "trials" / "trial-002").exists():
            assert process.poll() is None, "tailor tune ended before trial 3 started"
            assert time.monotonic() < deadline, "trial 3 never started"
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    code, _, stderr = run_cli(["tune", str(recipe), "--method", "grid", "--trials", "6"])
    assert code == 0, stderr
    trials = read_trials(out)
    done = [t for t in trials if t["state"] in ("complete", "pruned")]
    assert len(done) == 6
    points = [tuple(float(t[k]) for k in KEYS) for t in done]
    assert len(set(points)) == 6  # every grid point once, none twice
    killed = [t for t in trials if t["state"] == "fail"]
    assert [t["number"] for t in killed] == ["2"]
    retry = [t for t in done if t["note"] == "retry of interrupted trial 2"]
    assert len(retry) == 1 and tuple(float(retry[0][k]) for k in KEYS) in points
    status = json.loads((out / "trials" / "trial-002" / "status.json").read_text())
    assert status["status"] == "failed" and "interrupted" in status["reason"]
    assert "resuming: 2 of 6" in stderr


def test_resume_of_a_finished_study_runs_nothing_more(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    args = ["tune", str(recipe), "--method", "random", "--trials", "1"]
    assert run_cli(args)[0] == 0
    code, _, stderr = run_cli(args)
    assert code == 0, stderr
    assert len(read_trials(tmp_path / "tune")) == 1


def test_bad_search_key_is_one_line_with_a_suggestion(tmp_path: Path, tiny_model_dir: Path) -> None:
    search = "  space:\n    training.lerning_rate: {type: loguniform, low: 1.0e-5, high: 1.0e-3}\n"
    recipe = tune_recipe(tmp_path, tiny_model_dir, search=search)
    code, _, stderr = run_cli(["tune", str(recipe)])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "training.lerning_rate" in lines[0] and "did you mean 'training.learning_rate'" in lines[0]
    assert not (tmp_path / "tune" / "study.db").exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("training: {type: uniform, low: 0, high: 1}", "is a section"),
        ("output_dir: {type: categorical, choices: [a, b]}", "cannot be searched"),
        ("training.batch_size: {type: loguniform, low: 8, high: 64}", "use type: int"),
        ("training.batch_size: {type: int, low: 0, high: 64}", "training.batch_size"),
        ("training.learning_rate: {type: loguniform, low: 1.0e-5, high: 1.0e-3}", "grid search needs a finite list"),
    ],
)
def test_space_errors(tmp_path: Path, tiny_model_dir: Path, spec: str, message: str) -> None:
    recipe = load_recipe(tune_recipe(tmp_path, tiny_model_dir, search=f"  method: grid\n  space:\n    {spec}\n"))
    with pytest.raises(RecipeError, match=message):
        check_space(recipe)


def test_empty_space_and_bad_method_exit_2(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = tune_recipe(tmp_path, tiny_model_dir, search="  space: {}\n")
    code, _, stderr = run_cli(["tune", str(recipe)])
    assert code == 2 and "search.space is empty" in stderr
    code, _, stderr = run_cli(["tune", str(recipe), "--method", "anneal"])
    assert code == 2 and "search.method" in stderr


def test_override_keeps_floats_floats() -> None:
    assert override("training.learning_rate", 1e-05) == "training.learning_rate=1.0e-05"
    assert override("training.batch_size", 16) == "training.batch_size=16"
    assert override("training.lr_scheduler", "cosine") == "training.lr_scheduler=cosine"


def test_unknown_metric_stops_the_search_with_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    code, _, stderr = run_cli(["tune", str(recipe), "--method", "random", "--trials", "3", "--metric", "f1_macr"])
    assert code == 2
    assert "search.metric 'f1_macr'" in stderr and "f1_macro" in stderr
    trials = read_trials(tmp_path / "tune")
    assert [t["state"] for t in trials] == ["fail"]  # stopped after the first trial, not three
    assert not (Path(trials[0]["dir"]) / "model").exists()
