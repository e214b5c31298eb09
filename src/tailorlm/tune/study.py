"""The study: Optuna in ``output_dir/study.db`` (SQLite) or ``search.storage``, so a stopped `tailor tune`
resumes where it was, and several processes (``--workers N``, or one per machine) can share one search.

Resuming: running the same command again loads the study (``search.study``, ``load_if_exists``); finished trials are
kept and the study runs until ``search.trials`` trials are finished (complete or pruned) in total. A trial that a
killed process left RUNNING is marked FAIL and its values are enqueued again, so no point of the search is lost
(for grid search, a lost point would otherwise never be tried) and none is finished twice. A lock file
(``tune.lock``, holding the process id) refuses a second live `tailor tune` on the same folder, which is what
makes "RUNNING at start" mean "left by a dead process". A study in a shared ``search.storage`` cannot assume
that: there, only trials this machine's dead processes left (their host and pid are in the trial) are re-queued
at start, and Optuna's heartbeat (tune/storage.py) fails and re-queues those of dead processes elsewhere.

Several processes: each runs ``study.optimize`` one trial at a time on the shared storage. Before a trial a
process takes the machine-wide slot lock (tune/storage.py), counts finished plus running trials and stops at
``search.trials``; the lock is released once Optuna has created the trial (the objective's ``on_start``), so the
next process counts it: the study finishes the requested number, none twice (grid: trial k is grid point k;
random/TPE: each process's sampler is seeded apart, TPE with ``constant_liar``). Processes on different machines
share no lock; finishing at the same instant, each may start one trial past the target.

Samplers: grid (``GridSampler``), random (``RandomSampler``) and bayes (``TPESampler``), seeded from
``training.seed`` (random and TPE: plus the number of trials already in the study, so a resumed search does not
replay the first process's random draws); an uninterrupted search is reproducible. Pruners: ``MedianPruner`` and
``SuccessiveHalvingPruner`` on the intermediate validation scores, or none.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from tailorlm.errors import DataError, ModelError, RecipeError, UserError
from tailorlm.lifecycle import group_run
from tailorlm.metric_names import greater_is_better
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir, process_alive
from tailorlm.tune.objective import Objective, TrialFailed, drop_weights, parse_worker
from tailorlm.tune.outputs import best_trial, counts, write_outputs, write_trials
from tailorlm.tune.space import check_space, grid_size, grid_space
from tailorlm.tune.spawn import WorkerPlan, run_workers
from tailorlm.tune.storage import SlotGate, is_shared, make_storage, shown_url, slot_lock_path, storage_url, use_wal

#: trials failing one after another before the search gives up (the same error is likely to repeat)
MAX_FAILURES_IN_ROW = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class TuneResult:
    """What `tailor tune` prints: the best trial and where the outputs are."""

    out: Path
    metric: str
    direction: str
    best: FrozenTrial | None
    counts: dict[str, int]
    files: dict[str, Path]


# ------------------------------------------------------------------------------------------ settings


def resolve_metric(recipe: Recipe) -> tuple[str, str]:
    """(metric, direction): search.metric or the task's selection metric, direction from the metric."""
    from tailorlm.tasks import get_task

    task = get_task(recipe.task)
    default = "combined" if recipe.tasks else task.default_metric  # multi-task: multitask/ selection score
    metric = recipe.search.metric or recipe.training.metric or default
    if recipe.search.direction:
        return metric, recipe.search.direction
    return metric, "maximize" if greater_is_better(metric) else "minimize"


def check_recipe(recipe: Recipe) -> None:
    """Problems that would make every trial fail or mean nothing, found before the first trial."""
    from tailorlm.tasks.defaults import fill_model_name
    from tailorlm.tune.cv import check_kfold

    check_space(recipe)
    check_kfold(recipe)
    fill_model_name(recipe)
    has_validation = recipe.data.validation or recipe.data.split.validation > 0 or recipe.validation.kfold
    if not has_validation:
        raise RecipeError("search: tuning needs a validation split to score trials; set data.split.validation "
                          "(e.g. 0.1), data.validation, or validation.kfold")


def make_sampler(recipe: Recipe, existing: int, shared: bool = False) -> optuna.samplers.BaseSampler:
    """The method's sampler. Grid keeps the plain seed: it orders the grid, and a resumed study must see the
    same order (points are tracked by grid index); the random draws of the others are offset by ``existing``.

    ``shared``: other processes sample the same study at the same time. Their seeds are mixed with the process
    id (the same seed would draw the same points in every process; a plain sum does too, for two processes with
    consecutive ids that opened the study one trial apart), and TPE uses ``constant_liar``: a running trial
    counts as a poor result, so parallel processes do not all sample next to the same good point.
    """
    method = recipe.search.method
    if method == "grid":
        return optuna.samplers.GridSampler(grid_space(recipe), seed=recipe.training.seed)
    seed = recipe.training.seed + existing
    if shared:
        seed = int(np.random.SeedSequence([seed, os.getpid()]).generate_state(1)[0])
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE's default 10 random start-up trials would leave little room for it in a 12-20 trial search.
    startup = max(3, min(10, recipe.search.trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=shared)


def make_pruner(recipe: Recipe) -> optuna.pruners.BasePruner:
    if recipe.search.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, recipe.search.trials // 4)))
    if recipe.search.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner()
    return optuna.pruners.NopPruner()


def _signature(recipe: Recipe, metric: str, direction: str) -> str:
    """What must not change between a study and its resumption (trials and pruner may)."""
    space = {k: v.model_dump(mode="json") for k, v in recipe.search.space.items()}
    return json.dumps({"method": recipe.search.method, "metric": metric, "direction": direction, "space": space},
                      sort_keys=True)


# ------------------------------------------------------------------------------------------ study


@contextlib.contextmanager
def study_lock(out: Path) -> Iterator[None]:
    """One live `tailor tune` per folder; a lock left by a killed process (dead pid) is taken over."""
    lock = out / "tune.lock"
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except (OSError, ValueError):
            pid = 0
        if pid and pid != os.getpid() and process_alive(pid):
            raise UserError(f"{out}: another `tailor tune` (pid {pid}) is running on this study; wait for it, "
                            f"or delete {lock} if that process is gone")
    lock.write_text(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def open_study(recipe: Recipe, out: Path, metric: str, direction: str, *, shared: bool | None = None,
               console: Console | None = None) -> optuna.Study:
    """Create or load the study in its storage; refuse to resume a study of a different search.

    ``shared`` (default: ``search.storage`` is set): other processes run trials of this study at the same time,
    which turns on the heartbeat and the sampler's per-process seed; ``console`` shows heartbeat re-queues.
    """
    shared = is_shared(recipe) if shared is None else shared
    url = storage_url(recipe, out)
    where = out / "study.db" if recipe.search.storage is None else shown_url(url)

    def on_stale(study: optuna.Study, trial: FrozenTrial) -> None:
        requeue(study, trial, console or Console(quiet=True), "its process stopped sending a heartbeat")

    storage = make_storage(url, shared=shared, on_stale=on_stale)
    study = optuna.create_study(storage=storage, study_name=recipe.search.study, direction=direction,
                                load_if_exists=True)
    signature = _signature(recipe, metric, direction)
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        raise RecipeError(f"{where}: study '{recipe.search.study}' is of a different search (method, metric, "
                          f"direction or space changed); use a new output_dir or search.study, or delete it")
    study.sampler = make_sampler(recipe, len(study.trials), shared)
    study.pruner = make_pruner(recipe)
    return study


def recover_interrupted(study: optuna.Study, console: Console, shared: bool = False) -> int:
    """Trials left RUNNING by a killed process: mark them FAIL and enqueue their values again.

    Not ``shared`` (the folder's own study, held by tune.lock): every RUNNING trial is a dead process's.
    ``shared``: only those whose process ran on this machine and is gone; the heartbeat takes care of the rest.
    """
    recovered = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if shared and not _left_by_dead_local_process(trial):
            continue
        try:
            if not study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another process recovered it first
        requeue(study, trial, console, "the tune process stopped during this trial")
        recovered += 1
    return recovered


def _left_by_dead_local_process(trial: FrozenTrial) -> bool:
    where = parse_worker(trial.user_attrs.get("worker"))
    return where is not None and where[0] == socket.gethostname() and not process_alive(where[1])


def requeue(study: optuna.Study, trial: FrozenTrial, console: Console, why: str) -> None:
    """A trial failed by its process's death (it is FAIL already): say so in its folder, enqueue its values."""
    folder = trial.user_attrs.get("dir")
    if folder and Path(folder).exists():
        RunDir(folder).set_status("failed", reason=f"interrupted: {why}")
    enqueue_again(study, trial)
    console.print(f"trial {trial.number} was interrupted; its values will be tried again")


def enqueue_again(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue an interrupted trial's values once more, keeping its role and noting which trial it retries."""
    if trial.params:
        study.enqueue_trial(trial.params, user_attrs=carried_attrs(trial) | {"retry_of": trial.number})


#: user attributes that describe one attempt, not the point being tried (a retry gets its own)
ATTEMPT_ATTRS = frozenset({"dir", "error", "weights", "retry_of", "worker"})


def carried_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """What a retry keeps of the interrupted trial: its role (e.g. --budget's defaults trial), not its folder."""
    return {k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT_ATTRS}


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def taken(study: optuna.Study) -> int:
    """Trials finished or being run (by any process): what counts against ``search.trials`` before a trial."""
    return len(study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING)))


def _grid_exhausted(study: optuna.Study, size: int) -> bool:
    """Every grid point finished or failed for good (none waiting): more trials would repeat points."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    tried = {json.dumps(t.params, sort_keys=True) for t in trials if t.state in (*FINISHED, TrialState.FAIL)}
    return len(tried) >= size


def optimize(study: optuna.Study, objective: Objective, target: int, console: Console, grid: int | None,
             before_trial: Callable[[optuna.Study], bool] | None = None, gate: SlotGate | None = None) -> None:
    """Run trials one at a time until ``target`` are finished or taken by other processes; stop after repeated
    failures.

    ``before_trial(study)`` is asked before each trial and ends the search by returning False (--budget: the
    next trial would not fit in the time left; it may also enqueue the next trial's values). ``gate``: the slot
    lock shared with the other local processes of this study (none: this process is alone).
    """
    gate = gate or SlotGate(None)
    failures = 0
    while taken(study) < target:
        if grid is not None and _grid_exhausted(study, grid):
            console.print("every grid point has been tried; stopping")
            return
        if before_trial is not None and not before_trial(study):
            return
        last = _one_trial(study, objective, target, gate)
        if last is None:
            return  # the other processes hold the remaining trials
        write_trials(study, objective.base, objective.out)
        if last.state == TrialState.FAIL:
            failures += 1
            if failures >= MAX_FAILURES_IN_ROW:
                raise DataError(f"{failures} trials in a row failed; the last: {last.user_attrs.get('error')}")
        else:
            failures = 0
            value = f"{last.value:.4f}" if last.value is not None else "–"
            console.print(f"trial {last.number}: {last.state.name.lower()} · {objective.metric} {value} · "
                          f"{finished(study)}/{target} finished")


def _one_trial(study: optuna.Study, objective: Objective, target: int, gate: SlotGate) -> FrozenTrial | None:
    """One ``study.optimize`` trial, started only if a slot is free once the gate is held; the gate opens as soon
    as Optuna has created the trial (RUNNING: the next process counts it). None: no slot was left."""
    ran: list[FrozenTrial] = []
    objective.on_start, objective.current = gate.release, None
    try:
        gate.acquire()
        if taken(study) >= target:
            return None
        study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True,
                       callbacks=[lambda _study, trial: ran.append(trial)])
    except KeyboardInterrupt:
        _requeue_interrupted(study, objective.current)
        raise
    finally:
        gate.release()
        objective.on_start = None
    return ran[-1] if ran else None


def _requeue_interrupted(study: optuna.Study, number: int | None) -> None:
    """Ctrl-C mid-trial: the trial is FAIL now; enqueue its values so the next run tries them again."""
    trial = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if trial is not None and trial.state == TrialState.FAIL:
        enqueue_again(study, trial)


def keep_best_weights(study: optuna.Study) -> None:
    """Only the best trial keeps its weights: each trial's own rule (Objective) cannot see a trial another
    process finishes at the same moment, so the study's end applies it once more over every complete trial."""
    best = best_trial(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        folder = trial.user_attrs.get("dir")
        if folder and (best is None or trial.number != best.number):
            drop_weights(Path(folder))


# ------------------------------------------------------------------------------------------ entry point


def tune(recipe: Recipe, console: Console) -> TuneResult:
    """`tailor tune`: check the search, open (or resume) the study, run the trials (here, or in
    ``search.workers`` processes), write the outputs."""
    check_recipe(recipe)
    metric, direction = resolve_metric(recipe)
    target, grid = recipe.search.trials, None
    if recipe.search.method == "grid":
        grid = grid_size(recipe)
        if target > grid:
            console.print(f"the grid has {grid} points; running {grid} trials, not {target}")
            target = grid
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with group_run(recipe, console, "tune") as opened, study_lock(opened.run_dir.path):  # lifecycle.py
        out = opened.run_dir.path
        url = storage_url(recipe, out)
        if recipe.search.workers > 1:
            use_wal(url)  # several local writers of a SQLite file (a no-op for other databases)
        study = open_study(recipe, out, metric, direction, console=console)
        recover_interrupted(study, console, is_shared(recipe))
        done = finished(study)
        if done:
            console.print(f"resuming: {done} of {target} trials already finished")
        workers = min(recipe.search.workers, max(1, target - taken(study)))
        try:
            if workers > 1:
                _run_in_workers(study, recipe, out, WorkerPlan(workers, target, grid, metric, direction), console)
            else:
                objective = Objective(recipe, out, metric, direction == "maximize", console)
                gate = SlotGate(slot_lock_path(url, recipe.search.study))
                optimize(study, objective, target, console, grid, gate=gate)
        finally:
            keep_best_weights(study)
            files = write_outputs(study, recipe, out, metric, direction)
    return TuneResult(out, metric, direction, best_trial(study), counts(study), files)


def _run_in_workers(study: optuna.Study, recipe: Recipe, out: Path, plan: WorkerPlan, console: Console) -> None:
    """The trials in ``plan.count`` local processes; afterwards a killed worker's trial is re-queued here, and the
    first worker's error (the same in all of them, usually) becomes this command's one line."""
    ends = run_workers(recipe, out, plan, console)
    recover_interrupted(study, console, shared=True)  # every worker has stopped: their RUNNING trials are dead
    for end in ends:
        if end.error is not None:
            raise ERRORS.get(end.kind or "", UserError)(end.error)
    killed = [end for end in ends if end.code != 0]
    if killed:
        codes = ", ".join(f"worker {end.index}: exit code {end.code}" for end in killed)
        raise UserError(f"{len(killed)} of {plan.count} tune workers stopped early ({codes}); their trials are "
                        f"queued again: run the same command to finish the study")


#: the error classes a worker's error is raised as again (anything else: UserError)
ERRORS: dict[str, type[UserError]] = {"RecipeError": RecipeError, "DataError": DataError, "ModelError": ModelError,
                                      "MetricMissing": RecipeError, "UserError": UserError}


def summary_line(result: TuneResult) -> str:
    best = result.best
    if best is None:
        return "no trial finished"
    params: dict[str, Any] = best.params
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return f"best: trial {best.number}, validation {result.metric} {best.value:.4f} ({shown})"
