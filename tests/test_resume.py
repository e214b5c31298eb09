"""Resume: a `tailor run` killed with SIGKILL mid-epoch and resumed ends with an uninterrupted run's numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.conftest import sentiment_rows
from tests.helpers import run_cli

# Seconds each optimizer step sleeps in the run that gets killed, so the kill lands mid-training; sleeping
# changes no number. The patch goes through the real entry point, `tailorlm.cli.main`.
SLOW_RUN = """
import sys, time
from tailorlm.train import callbacks
callbacks.LogHistoryWriter.on_step_end = lambda self, *a, **k: time.sleep({delay})
from tailorlm.cli import main
sys.argv = ["tailor", *sys.argv[1:]]
main()
"""
#: wall times, output paths, and whether the tokenised splits came from the cache (the two runs start together)
# and the free memory the batch was planned for (train/memory_fit.py): a figure of the machine at that moment
TIMINGS = {"timings_s", "runtime_s", "samples_per_s", "tokens_per_s", "path", "tokenize_cache", "memory"}


def comparable(value: Any) -> Any:
    """metrics.json without wall times, output paths, cache status and free memory: what must match."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def tailor(args: list[str], log: Path, delay: float | None = None) -> subprocess.Popen:
    """`tailor ARGS` in a new process; its output goes to a file (a full pipe would stall the progress bar)."""
    code = SLOW_RUN.format(delay=delay) if delay else "from tailorlm.cli import main; main()"
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-c", code, *args], stdout=out, stderr=subprocess.STDOUT, env=env)


def finish(process: subprocess.Popen, log: Path, timeout: float = 120) -> str:
    process.wait(timeout=timeout)
    output = log.read_text()
    assert process.returncode == 0, output
    return output


def resume_recipe(folder: Path, model: Path) -> Path:
    data = folder / "reviews.csv"
    pd.DataFrame(sentiment_rows(120)).to_csv(data, index=False)
    recipe = folder / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification",
        "output_dir": str(folder / "uninterrupted"),
        "model": {"name": str(model)},
        "data": {"train": str(data), "split": {"validation": 0.15, "test": 0.2}},
        "training": {"epochs": 2, "batch_size": 8, "learning_rate": 2e-3, "max_length": 16, "save_steps": 2,
                     "evals_per_epoch": 2, "early_stopping_patience": None, "seed": 3},
        "baseline": {"zero_shot": False, "linear_probe": True},
    }))
    return recipe


def complete_checkpoints(folder: Path) -> list[int]:
    from tailorlm.train.resume import is_complete

    return sorted(int(p.name.split("-")[1]) for p in folder.glob("checkpoint-*") if is_complete(p))


def test_killed_run_resumes_to_the_same_metrics(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = resume_recipe(tmp_path, tiny_model_dir)
    killed = tmp_path / "killed"
    victim = tailor(["run", str(recipe), "--set", f"output_dir={killed}"], tmp_path / "killed.log", delay=0.3)
    uninterrupted = tailor(["run", str(recipe)], tmp_path / "reference.log")  # alongside: the reference numbers
    deadline = time.monotonic() + 90
    # 10 steps per epoch: wait for a checkpoint in the second epoch, then kill mid-epoch
    while not any(step > 10 for step in complete_checkpoints(killed / "checkpoints")):
        assert victim.poll() is None, "ended before the kill: " + (tmp_path / "killed.log").read_text()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert json.loads((killed / "status.json").read_text())["status"] == "running"
    assert not (killed / "metrics.json").exists()

    resumed_log = tmp_path / "resumed.log"
    output = finish(tailor(["run", str(recipe), "--set", f"output_dir={killed}", "--resume"], resumed_log), resumed_log)
    assert "resume: resuming from checkpoint-" in output
    finish(uninterrupted, tmp_path / "reference.log")
    resumed = json.loads((killed / "metrics.json").read_text())
    reference = json.loads((tmp_path / "uninterrupted" / "metrics.json").read_text())
    assert comparable(resumed) == comparable(reference)
    assert resumed["train"]["global_step"] == 20
    status = json.loads((killed / "status.json").read_text())
    assert status["status"] == "finished" and status["resumed_from"]
    assert not (killed / "checkpoints").exists()


def test_resume_refuses_a_changed_recipe_and_a_missing_checkpoint(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tailorlm.recipe import load_recipe
    from tailorlm.rundir import RunDir
    from tailorlm.train.resume import plan_resume

    recipe_file = resume_recipe(tmp_path, tiny_model_dir)
    run_dir = RunDir.create(tmp_path / "uninterrupted")
    code, _, err = run_cli(["run", str(recipe_file), "--resume"])
    assert code == 2 and "cannot resume: no interrupted run here" in err

    recipe = load_recipe(recipe_file)
    recipe.model.name = str(tiny_model_dir)
    from tailorlm.recipe import dump_recipe

    run_dir.write_text("recipe.resolved.yaml", dump_recipe(recipe))
    run_dir.set_status("running", pid=999_999_999)
    checkpoint = run_dir.checkpoints / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (checkpoint / name).write_bytes(b"x")
    (checkpoint / "trainer_state.json").write_text("{\"global_step\": 3")  # cut off mid-write: not complete
    assert plan_resume(recipe, run_dir).checkpoint is None
    (checkpoint / "trainer_state.json").write_text("{\"global_step\": 3}")
    assert plan_resume(recipe, run_dir).checkpoint == checkpoint

    changed = load_recipe(recipe_file, ["training.learning_rate=0.1"])
    changed.model.name = str(tiny_model_dir)
    plan = plan_resume(changed, run_dir)
    assert plan.checkpoint is None and "training.learning_rate" in plan.reason
    changed.training.resume = "always"
    with pytest.raises(Exception, match="recipe differs"):
        plan_resume(changed, run_dir)


def test_divergence_stops_at_the_first_nan_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A NaN loss injected from the 6th training forward: stop at step 6, its save cancelled, status failed."""
    from tailorlm.tasks.classification.task import ClassificationTask

    build = ClassificationTask.build_model

    def poisoned(self: Any, *args: Any, **kwargs: Any) -> Any:
        model = build(self, *args, **kwargs)
        calls = {"n": 0}

        def poison(module: Any, inputs: Any, output: Any) -> None:
            if module.training:
                calls["n"] += 1
                if calls["n"] >= 6:
                    output["loss"] = output["loss"] * float("nan")

        model.register_forward_hook(poison)
        return model

    monkeypatch.setattr(ClassificationTask, "build_model", poisoned)
    recipe = resume_recipe(tmp_path, tiny_model_dir)
    out = tmp_path / "diverged"
    code, _, err = run_cli(["run", str(recipe), "--set", f"output_dir={out}", "--set", "baseline.linear_probe=false"])
    assert code == 2, err
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert "diverged" in line and "at step 6" in line and "learning_rate" in line and "checkpoint-5" in line, err
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and "diverged" in status["reason"] and status["resumable"]
    assert complete_checkpoints(out / "checkpoints") == [5]  # saves at 2, 4 and 5 (evaluation); limit 1


def test_sigterm_marks_the_run_interrupted(tmp_path: Path) -> None:
    from tailorlm.rundir import RunDir
    from tailorlm.safety import sigterm_as_interrupt
    from tailorlm.train.resume import record_failure

    run_dir = RunDir.create(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt) as caught, sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    record_failure(run_dir, caught.value)
    status = json.loads(run_dir.status_file.read_text())
    assert status["status"] == "interrupted" and "SIGTERM" in status["reason"] and status["resumable"] is False
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
