"""`tailor run --budget`: the duration key, the planner on a fake clock, and one real run that is killed and resumed.

The scheduling arithmetic is tested with made-up times (no model, no waiting), because wall times on a shared
machine vary by a factor of two. One end-to-end test then runs the real command with the tiny random BERT, kills
it during its second trial, runs the same command again, and checks that the study grew (not restarted) and that
the second invocation kept to its budget.
"""

from __future__ import annotations

import datetime
import json
import math
import multiprocessing
import os
import signal
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from rich.console import Console

from tailorlm.errors import RecipeError
from tailorlm.recipe import budget_seconds, load_recipe
from tailorlm.tune.budget import EPOCHS, DeadlineCallback, OutOfTime, Scheduler, check_budget_recipe
from tailorlm.tune.budget_plan import ADOPT_S, FINAL_SLACK_S, SAFETY, Costs, TrialTimes, plan_next, trial_deadline
from tests.conftest import sentiment_rows, write_recipe
from tests.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def budget_recipe(folder: Path, model_dir: Path, extra: str = "") -> Path:
    data = folder / "reviews.csv"
    pd.DataFrame(sentiment_rows(60)).to_csv(data, index=False)
    return write_recipe(folder / "budget.yaml", f"""
task: classification
output_dir: {folder / "run"}
model: {{name: {model_dir}}}
data:
  train: {data}
  split: {{validation: 0.25, test: 0.2}}
baseline: {{zero_shot: false}}
{extra}""")


# ------------------------------------------------------------------------------------------ search.budget


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("20m", 1200), ("1h30m", 5400), ("20", 1200),
                                               ("1.5h", 5400), ("2m 30s", 150), ("45 s", 45)])
def test_budget_durations(text: str, seconds: float) -> None:
    assert budget_seconds(text) == seconds


def test_a_bare_number_in_yaml_is_minutes(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = load_recipe(budget_recipe(tmp_path, tiny_model_dir, "search: {budget: 20}\n"))
    assert recipe.search.budget == "20" and budget_seconds(recipe.search.budget) == 1200


@pytest.mark.parametrize("bad", ["soon", "0", "-5m", "1h30", "20x"])
def test_bad_budget_is_one_line_naming_the_key(tmp_path: Path, tiny_model_dir: Path, bad: str) -> None:
    code, _, stderr = run_cli(["run", str(budget_recipe(tmp_path, tiny_model_dir)), "--budget", bad])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "search.budget" in lines[0] and "20m" in lines[0], stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(("extra", "key"), [
    ("search: {space: {training.weight_decay: {type: categorical, choices: [0.0, 0.1]}}}", "search.space"),
    ("validation: {kfold: 3}", "validation.kfold"),
    ("search: {method: grid}", "search.method"),
    ("training: {seeds: 2}", "training.seeds"),
    ("training: {resume: always}", "training.resume"),
    ("search: {workers: 2}", "search.workers"),
    ("search: {storage: 'postgresql://u@h/db'}", "search.storage"),
])
def test_settings_a_budget_cannot_honour_are_refused(tmp_path: Path, tiny_model_dir: Path, extra: str,
                                                     key: str) -> None:
    with pytest.raises(RecipeError, match=key):
        check_budget_recipe(load_recipe(budget_recipe(tmp_path, tiny_model_dir, extra + "\n")))


# ------------------------------------------------------------------------------------------ the planner


def times(duration: float = 20.0, pre: float = 2.0, baselines: float = 0.0, train: float = 10.0,
          epochs: float = 5.0) -> TrialTimes:
    return TrialTimes(duration, pre, baselines, train, epochs)


def test_costs_are_medians_with_a_safety_margin() -> None:
    costs = Costs.from_trials([times(baselines=4.0), times(duration=30.0, train=20.0),
                               times(duration=22.0, train=12.0, epochs=6.0)])
    assert costs is not None
    assert costs.epoch_s == pytest.approx(SAFETY * 2.0)  # median of 2, 4, 2 s per epoch
    assert costs.post_s == pytest.approx(SAFETY * 8.0)  # median of 20-2-4-10, 30-2-20, 22-2-12 = 4, 8, 8
    assert costs.baselines_s == pytest.approx(SAFETY * 4.0)  # only the defaults trial measured them
    # the final run of a trial that skipped the baselines: its own time again, plus the baselines
    assert costs.final_s(times()) == pytest.approx(SAFETY * 20.0 + SAFETY * 4.0 + FINAL_SLACK_S)


def test_deadline_leaves_room_for_the_best_or_for_retraining_this_trial() -> None:
    # late in the budget the best so far binds: its 30 s final run, after this trial's 5 s test and report
    assert trial_deadline(end=100, start=60, reserve=30, post_s=5, extra_s=0) == pytest.approx(65)
    # early on, retraining this trial should it win binds: as long again as it took, (100 + 20 - 3) / 2 - 5
    assert trial_deadline(end=100, start=20, reserve=10, post_s=5, extra_s=0) == pytest.approx(53.5)
    # ... and the baselines it skipped come on top of that retraining
    assert trial_deadline(end=100, start=20, reserve=10, post_s=5, extra_s=7) == pytest.approx(50.0)
    assert trial_deadline(end=100, start=0, reserve=None, post_s=0, extra_s=0) == pytest.approx(48.5)


def test_plan_runs_free_then_fixes_epochs_then_stops() -> None:
    costs = Costs(pre_s=1.0, post_s=2.0, epoch_s=1.0, baselines_s=0.0)
    assert plan_next(0.0, 1000.0, costs, reserve=20.0, epochs=(2, 10)).kind == "free"
    # at 60 of 100 with a 20 s final run: training must end by min(78, 76.5); 76.5 - 60 - 1 = 15.5 s: all fit
    assert plan_next(60.0, 100.0, costs, 20.0, (2, 10)).kind == "free"
    # at 70: min(78, 81.5) = 78; 78 - 70 - 1 = 7 s: at most 7 epochs
    plan = plan_next(70.0, 100.0, costs, 20.0, (2, 10))
    assert (plan.kind, plan.epochs, plan.deadline) == ("epochs", 7, pytest.approx(78.0))
    stop = plan_next(76.0, 100.0, costs, 20.0, (2, 10))
    assert stop.kind == "stop" and "less than 2 epoch(s)" in stop.reason


def test_the_defaults_trial_may_train_until_the_budgets_last_tenth() -> None:
    # it runs the baselines, so if it wins its run is the result: nothing to retrain, no half kept back
    plan = plan_next(10.0, 100.0, None, None, (2, 10), runs_baselines=True)
    assert plan.kind == "free" and plan.deadline == pytest.approx(100 - 0.1 * 90)
    # any other first trial would have to be retrained if it won: it keeps half the time for that
    other = plan_next(10.0, 100.0, None, None, (2, 10), runs_baselines=False)
    assert other.deadline == pytest.approx((100 + 10 - FINAL_SLACK_S) / 2)


def test_the_last_trial_that_fits_is_enqueued_unpruned() -> None:
    """With fewer than twice the space's lowest epochs left, no trial can follow: pruning it would only leave the
    time it frees unused, so it is marked and the pruning callback lets it finish."""
    from tailorlm.tune.budget import enqueue_planned
    from tailorlm.tune.objective import PruningCallback

    costs = Costs(pre_s=1.0, post_s=2.0, epoch_s=1.0, baselines_s=0.0)
    assert not plan_next(70.0, 100.0, costs, 20.0, (2, 10)).last  # 7 epochs fit: another trial of 2 could follow
    plan = plan_next(74.0, 100.0, costs, 20.0, (2, 10))  # 78 - 74 - 1 = 3 epochs: fewer than 2 + 2
    assert (plan.kind, plan.epochs, plan.last) == ("epochs", 3, True)
    study = optuna.create_study(direction="maximize", pruner=AlwaysPrune())
    enqueue_planned(study, plan)
    trial = study.ask()
    assert trial.params == {} and trial.user_attrs["unpruned"] is True
    assert trial.user_attrs["note"] == "epochs fixed to 3: the most that fit in the time left; the last trial " \
                                       "that fits: not pruned"
    state = type("S", (), {"global_step": 4, "max_steps": 12})()
    PruningCallback(trial, "f1_macro").on_evaluate(None, state, None, metrics={"eval_f1_macro": 0.5})  # no raise
    other = study.ask()
    with pytest.raises(optuna.TrialPruned):
        PruningCallback(other, "f1_macro").on_evaluate(None, state, None, metrics={"eval_f1_macro": 0.5})


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class State:
    global_step = 7


def test_deadline_callback_prunes_after_an_evaluation_and_fails_before_one() -> None:
    clock = FakeClock()
    callback = DeadlineCallback(clock)
    callback.deadline = 10.0
    callback.on_train_begin(None, State(), None)
    clock.now = 11.0
    with pytest.raises(OutOfTime, match="before its first evaluation"):
        callback.on_step_end(None, State(), None)
    callback.on_evaluate(None, State(), None)
    clock.now = 9.0
    callback.on_step_end(None, State(), None)  # before the deadline: nothing happens
    clock.now = 12.0
    with pytest.raises(optuna.TrialPruned, match="time budget at step 7, after 1 evaluation"):
        callback.on_step_end(None, State(), None)


class Control:
    should_training_stop = False


def test_the_defaults_trial_stops_at_its_best_checkpoint_rather_than_being_pruned() -> None:
    clock, control = FakeClock(), Control()
    callback = DeadlineCallback(clock)
    callback.deadline, callback.graceful = 10.0, True
    callback.on_train_begin(None, State(), control)
    clock.now = 11.0
    with pytest.raises(OutOfTime):  # still: without an evaluation it measured nothing
        callback.on_step_end(None, State(), control)
    callback.on_evaluate(None, State(), control)
    callback.on_step_end(None, State(), control)
    assert control.should_training_stop is True and callback.stopped_at == 7


def test_a_winning_defaults_trial_is_copied_as_the_result(tmp_path: Path) -> None:
    from tailorlm.tune.adopt import adopt_trial, reusable

    trial_dir, out = tmp_path / "run" / "search" / "trials" / "trial-000", tmp_path / "run"
    (trial_dir / "model").mkdir(parents=True)
    (trial_dir / "checkpoints" / "checkpoint-4").mkdir(parents=True)
    (trial_dir / "model" / "model.safetensors").write_bytes(b"weights")
    (trial_dir / "metrics.json").write_text(json.dumps({"tuned": {"f1_macro": 0.8}}))
    (trial_dir / "recipe.resolved.yaml").write_text(f"# auto: epochs 18\ntask: classification\n"
                                                    f"output_dir: {trial_dir}\n")
    trial = create_trial(state=TrialState.COMPLETE, value=0.8, params={}, distributions={},
                         user_attrs={"dir": str(trial_dir), "role": "defaults"})
    assert reusable(trial)
    assert adopt_trial(trial_dir, out) == {"tuned": {"f1_macro": 0.8}}
    assert (out / "model" / "model.safetensors").read_bytes() == b"weights"
    assert not (out / "checkpoints").exists() and (trial_dir / "model").is_dir()  # copied, not moved
    resolved = (out / "recipe.resolved.yaml").read_text()
    assert resolved.startswith("# auto: epochs 18") and f'output_dir: "{out}"' in resolved
    other = create_trial(state=TrialState.COMPLETE, value=0.9, params={}, distributions={},
                         user_attrs={"dir": str(trial_dir), "role": ""})
    assert not reusable(other)  # a trial that skipped the baselines is retrained with them


def _trial_run(folder: Path, model_dir: Path, name: str, *overrides: str) -> Path:
    """A real tiny run into ``folder/name``, as a budget trial leaves its run directory."""
    recipe = budget_recipe(folder, model_dir)
    code, _, stderr = run_cli(["run", str(recipe), "--set", f"output_dir={folder / name}",
                               *[arg for o in overrides for arg in ("--set", o)]])
    assert code == 0, stderr
    return folder / name


def test_a_winner_that_skipped_the_baselines_is_adopted_with_the_defaults_trials(tmp_path: Path,
                                                                               tiny_model_dir: Path) -> None:
    """No retraining: the winner's run directory, the defaults trial's baselines merged in, the paired test and
    verdict computed again against them; with other test rows, nothing is written and the caller retrains."""
    from tailorlm.tune.adopt import adopt_with_baselines, baseline_source

    defaults_dir = _trial_run(tmp_path, tiny_model_dir, "trial-000")
    winner_dir = _trial_run(tmp_path, tiny_model_dir, "trial-001", "baseline.linear_probe=false",
                            "training.learning_rate=3e-4")
    study = optuna.create_study(direction="maximize")
    for number, folder in enumerate((defaults_dir, winner_dir)):
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=0.5 + number, params={}, distributions={},
                                     user_attrs={"dir": str(folder), "role": "" if number else "defaults"}))
    assert baseline_source(study) == defaults_dir
    winner = study.trials[1]
    final = load_recipe(tmp_path / "budget.yaml", [f"output_dir={tmp_path / 'run'}"])
    metrics = adopt_with_baselines(winner, defaults_dir, final)
    assert metrics is not None
    source, own = (json.loads((d / "metrics.json").read_text()) for d in (defaults_dir, winner_dir))
    assert "linear_probe" not in own["baseline"] and metrics["baseline"] == source["baseline"]
    assert metrics["tuned"] == own["tuned"] and metrics["adopted"]["trial"] == 1
    assert metrics["significance"]["vs_baseline"]["baseline"] == "linear_probe"
    assert "linear probe" in metrics["verdict"]["sentence"]
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["baseline"] == source["baseline"] and written["verdict"] == metrics["verdict"]
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    own_rows = [json.loads(line) for line in (winner_dir / "predictions.jsonl").read_text().splitlines()]
    assert [r["predicted"] for r in rows] == [r["predicted"] for r in own_rows]  # the winner's predictions
    assert all("linear_probe" in r["baselines"] for r in rows)
    assert (tmp_path / "run" / "model").is_dir() and "linear probe" in (tmp_path / "run" / "report.md").read_text()
    resolved = load_recipe(tmp_path / "run" / "recipe.resolved.yaml")
    assert resolved.baseline.linear_probe and resolved.training.learning_rate == pytest.approx(3e-4)

    other = tmp_path / "other"
    lines = (winner_dir / "predictions.jsonl").read_text().splitlines()
    (winner_dir / "predictions.jsonl").write_text("\n".join(lines[1:]) + "\n")  # scored on other test rows
    assert adopt_with_baselines(winner, defaults_dir, final.model_copy(update={"output_dir": str(other)})) is None
    assert not other.exists()


def test_when_winners_are_adopted_a_trial_keeps_no_time_back_for_its_retraining() -> None:
    # retrained: min(100 - 5 - 10, (100 + 20 - 3) / 2 - 5) = 53.5; adopted: only its own end and the adoption
    assert trial_deadline(end=100, start=20, reserve=10, post_s=5, extra_s=0, retrained=False) == \
        pytest.approx(100 - 5 - 10)
    assert trial_deadline(end=100, start=20, reserve=None, post_s=5, extra_s=0, retrained=False) == \
        pytest.approx(100 - 5 - ADOPT_S)
    costs = Costs(pre_s=1.0, post_s=2.0, epoch_s=1.0, baselines_s=4.0)
    retrained = plan_next(20.0, 100.0, costs, ADOPT_S, (2, 100))
    adopted = plan_next(20.0, 100.0, costs, ADOPT_S, (2, 100), retrained=False)
    assert (retrained.kind, retrained.epochs) == ("epochs", 33)  # (100 + 20 - 4 - 3) / 2 - 2 - 20 - 1
    assert (adopted.kind, adopted.epochs) == ("epochs", 67)  # 100 - 2 - 10 - 20 - 1


def finished_trial(folder: Path, number: int, seconds: float, stages: dict[str, float], epochs: float,
                   value: float) -> optuna.trial.FrozenTrial:
    """A complete trial as the objective leaves it: a folder whose metrics.json holds the stage timings."""
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"timings_s": stages, "train": {"epochs_run": epochs}}))
    trial = create_trial(
        state=TrialState.COMPLETE, value=value,
        params={"training.learning_rate": 1e-4, EPOCHS: int(epochs), "training.batch_size": 16},
        distributions={"training.learning_rate": FloatDistribution(1e-5, 1e-3, log=True),
                       EPOCHS: IntDistribution(2, 10), "training.batch_size": CategoricalDistribution([8, 16, 32])},
        user_attrs={"dir": str(folder), "role": "defaults" if number == 0 else ""},
    )
    trial.datetime_start = datetime.datetime(2026, 1, 1)
    trial.datetime_complete = trial.datetime_start + datetime.timedelta(seconds=seconds)
    return trial


def test_scheduler_fixes_the_next_trials_epochs_from_measured_trials(tmp_path: Path) -> None:
    """Trial 0 (with baselines) took 20 s: 1 s before training, 4 s baselines, 10 s for 5 epochs, 5 s after.
    At t=50 of a 100 s budget, the final run of trial 0 needs 1.1 * 20 + 3 = 25 s; training must end by
    min(100 - 5.5 - 25, (100 + 50 - 4.4 - 3) / 2 - 5.5) = 65.8; 65.8 - 50 - 1.1 = 14.7 s at 2.2 s per epoch:
    6 epochs, fewer than the space's 10, so the next trial is enqueued with epochs fixed to 6."""
    study = optuna.create_study(direction="maximize")
    stages = {"prepare": 0.5, "tokenize": 0.5, "baselines": 4.0, "train": 10.0}
    study.add_trial(finished_trial(tmp_path / "t0", 0, 20.0, stages, 5.0, 0.7))
    clock = FakeClock(50.0)
    scheduler = Scheduler(end=100.0, clock=clock, epochs=(2, 10), console=Console(quiet=True))
    assert scheduler(study) is True
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == {EPOCHS: 6}
    assert scheduler.reserve_s == pytest.approx(SAFETY * 20.0 + FINAL_SLACK_S)
    assert scheduler.callback.deadline == pytest.approx(65.8)
    clock.now = 67.0  # 69.5 - 67 - 1.1 s: not even 2 epochs fit; the search ends and says why
    waiting_before = len(study.get_trials(states=(TrialState.WAITING,)))
    assert scheduler(study) is False and "less than 2 epoch(s)" in scheduler.stopped
    assert len(study.get_trials(states=(TrialState.WAITING,))) == waiting_before


# ------------------------------------------------------------------------------------------ end to end


def _budget_run(recipe: str, budget: str) -> None:
    """The CLI in a forked child (the parent's imports are reused, so start-up does not eat the budget)."""
    code, _, _ = run_cli(["run", recipe, "--budget", budget])
    os._exit(code)


#: the second invocation may exceed the budget by 10% plus this: the Trainer's step in progress when the
#: deadline callback fires, the test evaluation and report of a trial that completes just before its deadline
#: (both counted in the estimate, but measured on a machine whose speed varies), and drawing the report again
OVERHEAD_S = 5.0


@pytest.mark.timeout(400)
def test_killed_budget_run_resumes_its_study_and_keeps_to_the_budget(tmp_path: Path, tiny_model_dir: Path) -> None:
    """SIGKILL during trial 1, then the same recipe again: the study keeps trial 0 (the defaults, not rerun),
    retries trial 1, adds trials, trains the winner into output_dir and ends within the budget.

    The killed invocation gets a longer budget only so that, however slow the machine is at that moment, its
    planner surely starts trial 1 (the budget is not part of the study: any budget continues it)."""
    import tailorlm.run  # noqa: F401  (imported before the fork, as a user's process has it by the time it trains)

    recipe = str(budget_recipe(tmp_path, tiny_model_dir))
    out, budget = tmp_path / "run", "60s"
    child = multiprocessing.get_context("fork").Process(target=_budget_run, args=(recipe, "300s"))
    child.start()
    try:
        deadline = time.monotonic() + 200
        while not (out / "search" / "trials" / "trial-001").exists():
            assert child.is_alive(), "the budget run ended before trial 1 started"
            assert time.monotonic() < deadline, "trial 1 never started"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.join()
    assert not (out / "metrics.json").exists()  # killed during the search: no final run yet
    started = time.monotonic()
    code, _, stderr = run_cli(["run", recipe, "--budget", budget])
    elapsed = time.monotonic() - started
    assert code == 0, stderr
    search = json.loads((out / "metrics.json").read_text())["search"]
    seen = json.dumps({k: search[k] for k in ("wall_s", "time_s", "stopped", "counts", "trials")})  # on failure
    assert search["trials_before"] == 2, seen  # trial 0 finished, trial 1 killed: the same study continued
    numbers = [t["number"] for t in search["trials"]]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 3, seen  # it grew: numbering goes on
    assert [t for t in search["trials"][2:] if t["state"] in ("complete", "pruned")], seen  # trained this time
    assert [t["number"] for t in search["trials"] if t["note"] == "the defaults (auto)"] == [0]
    assert search["trials"][1]["state"] == "fail" and search["trials"][2]["note"].startswith("retry of"), seen
    assert search["defaults"]["trial"] == 0 and isinstance(search["defaults"]["validation"], float)
    assert search["budget_s"] == 60.0 and search["best"] is not None
    # the budget: wall_s is measured inside the command; elapsed also covers the call around it
    assert search["wall_s"] <= 60.0 * 1.1 + OVERHEAD_S and elapsed <= 60.0 * 1.1 + OVERHEAD_S + 2, (elapsed, seen)
    assert search["wall_s"] >= 60.0 * 0.5, seen  # and it used the time, rather than stopping at once
    assert "resuming the search" in stderr and "trial 1 was interrupted" in stderr
    report = (out / "report.md").read_text()
    assert "Search within the time budget" in report and "the defaults (auto)" in report
    final = json.loads((out / "metrics.json").read_text())["validation"]["f1_macro"]
    assert math.isclose(final, search["best"]["validation"], abs_tol=0.02), (final, seen)  # same seed, same score
