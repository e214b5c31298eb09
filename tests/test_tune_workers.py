"""`tailor tune --workers N`: several processes on one study, through its storage (tune/spawn.py, tune/worker.py).

The real CLI in a subprocess on the tiny random BERT (tests/test_tune.py's recipe): two workers finish exactly the
requested grid trials, each point once, in processes of their own with one torch thread each (two cores); the
folder's tune.lock still refuses an independent `tailor tune` meanwhile; only the best trial keeps weights and
best_recipe.yaml reproduces it; a search killed with its workers resumes without losing or repeating a point.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tailorlm.tune.spawn import threads_per_worker
from tests.helpers import run_cli
from tests.test_tune import KEYS, read_trials, tune_recipe

ENV = os.environ | {"HF_HUB_OFFLINE": "1"}


def tune_command(recipe: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "tailorlm", "tune", str(recipe), "--method", "grid", "--metric", "loss", *args]


def wait_for(path: Path, process: subprocess.Popen[bytes], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"tailor tune ended before {what}"
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.05)


def stored_trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="tailor-tune", storage=f"sqlite:///{out / 'study.db'}").trials


def test_two_workers_share_one_study(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    out = tmp_path / "tune"
    process = subprocess.Popen(tune_command(recipe, "--trials", "3", "--workers", "2"), env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(out / "trials" / "trial-000", process, "the first trial started")
        code, _, stderr = run_cli(["tune", str(recipe), "--method", "grid", "--trials", "3"])
        assert code == 2 and f"another `tailor tune` (pid {process.pid})" in stderr, stderr  # the folder is taken
        stdout, stderr_bytes = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr_bytes.decode()
    assert "2 workers, " in stderr_bytes.decode()
    trials = read_trials(out)
    assert [t["state"] for t in trials] == ["complete"] * 3  # exactly the requested number: the third trial's
    assert sorted(int(t["number"]) for t in trials) == [0, 1, 2]  # worker took the last slot, the other stopped
    assert len({tuple(float(t[k]) for k in KEYS) for t in trials}) == 3  # no grid point twice
    workers = {t.user_attrs["worker"] for t in stored_trials(out)}
    assert len(workers) == 2 and f":{process.pid}" not in " ".join(workers)  # two processes, not the parent
    threads = {json.loads((Path(t["dir"]) / "run_info.json").read_text())["torch_threads"] for t in trials}
    assert threads == {threads_per_worker(2)}  # each worker had its share of the cores
    summary = json.loads((out / "tune.json").read_text())
    assert summary["workers"] == 2 and summary["counts"] == {"complete": 3}
    best = summary["best"]
    assert [t["number"] for t in trials if (Path(t["dir"]) / "model").is_dir()] == [str(best["number"])]
    assert "best: trial" in stdout.decode()
    code, _, stderr = run_cli(["run", str(out / "best_recipe.yaml")])
    assert code == 0, stderr
    rerun = json.loads((out / "best" / "metrics.json").read_text())
    resolved = (out / "best" / "recipe.resolved.yaml").read_text()
    assert f"learning_rate: {best['params']['training.learning_rate']}" in resolved
    assert rerun["validation"]["loss"] == pytest.approx(best["value"], abs=0.005)  # the best trial, reproduced


def test_killed_workers_resume_without_losing_or_repeating_a_point(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SIGKILL to the parent and both workers while trials run; the same command finishes the grid."""
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    out = tmp_path / "tune"
    command = tune_command(recipe, "--trials", "2", "--workers", "2")
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)  # its own process group: the workers are killed with it
    try:
        for number in (0, 1):  # both workers are inside a trial
            wait_for(out / "trials" / f"trial-00{number}" / "run_info.json", process, f"trial {number} started")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    running = [t for t in stored_trials(out) if t.state == optuna.trial.TrialState.RUNNING]
    assert running  # the kill left trials RUNNING, as a power cut would
    result = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    trials = read_trials(out)
    done = [t for t in trials if t["state"] == "complete"]
    assert len(done) == 2
    assert len({tuple(float(t[k]) for k in KEYS) for t in done}) == 2  # each point once
    retried = {t["note"] for t in done if t["note"].startswith("retry of interrupted trial")}
    assert retried == {f"retry of interrupted trial {t.number}" for t in running if t.params}
    assert not (out / "tune.lock").exists()
