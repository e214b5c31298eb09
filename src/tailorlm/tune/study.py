"""The study: Optuna in ``output_dir/study.db`` (SQLite), so a stopped `tailor tune` resumes where it was.

Resuming: running the same command again loads the study (fixed name, ``load_if_exists``); finished trials are
kept and the study runs until ``search.trials`` trials are finished (complete or pruned) in total. A trial that a
killed process left RUNNING is marked FAIL and its values are enqueued again, so no point of the search is lost
(for grid search, a lost point would otherwise never be tried) and none is finished twice. A lock file
(``tune.lock``, holding the process id) refuses a second live `tailor tune` on the same folder, which is what
makes "RUNNING at start" mean "left by a dead process".

Samplers: grid (``GridSampler``), random (``RandomSampler``) and bayes (``TPESampler``), seeded from
``training.seed`` (random and TPE: plus the number of trials already in the study, so a resumed search does not
replay the first process's random draws); an uninterrupted search is reproducible. Pruners: ``MedianPruner`` and
``SuccessiveHalvingPruner`` on the intermediate validation scores, or none.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console

from tailorlm.errors import DataError, RecipeError, UserError
from tailorlm.lifecycle import group_run
from tailorlm.metric_names import greater_is_better
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir, process_alive
from tailorlm.tune.objective import Objective, TrialFailed
from tailorlm.tune.outputs import best_trial, counts, write_outputs, write_trials
from tailorlm.tune.space import check_space, grid_size, grid_space

STUDY_NAME = "tailor-tune"
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


def make_sampler(recipe: Recipe, existing: int) -> optuna.samplers.BaseSampler:
    """The method's sampler. Grid keeps the plain seed: it orders the grid, and a resumed study must see the
    same order (points are tracked by grid index); the random draws of the others are offset by ``existing``."""
    method = recipe.search.method
    if method == "grid":
        return optuna.samplers.GridSampler(grid_space(recipe), seed=recipe.training.seed)
    seed = recipe.training.seed + existing
    if method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE's default 10 random start-up trials would leave little room for it in a 12-20 trial search.
    startup = max(3, min(10, recipe.search.trials // 3))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


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


def open_study(recipe: Recipe, out: Path, metric: str, direction: str) -> optuna.Study:
    """Create or load the study in out/study.db; refuse to resume a study of a different search."""
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, direction=direction, load_if_exists=True)
    signature = _signature(recipe, metric, direction)
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        raise RecipeError(f"{out}: holds a study of a different search (method, metric, direction or space "
                          f"changed); use a new output_dir or delete {out / 'study.db'}")
    study.sampler = make_sampler(recipe, len(study.trials))
    study.pruner = make_pruner(recipe)
    return study


def recover_interrupted(study: optuna.Study, console: Console) -> int:
    """Trials left RUNNING by a killed process: mark them FAIL and enqueue their values again."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        folder = trial.user_attrs.get("dir")
        if folder and Path(folder).exists():
            RunDir(folder).set_status("failed", reason="interrupted: the tune process stopped during this trial")
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs=carried_attrs(trial) | {"retry_of": trial.number})
        console.print(f"trial {trial.number} was interrupted; its values will be tried again")
    return len(stale)


#: user attributes that describe one attempt, not the point being tried (a retry gets its own)
ATTEMPT_ATTRS = frozenset({"dir", "error", "weights", "retry_of"})


def carried_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """What a retry keeps of the interrupted trial: its role (e.g. --budget's defaults trial), not its folder."""
    return {k: v for k, v in trial.user_attrs.items() if k not in ATTEMPT_ATTRS}


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _grid_exhausted(study: optuna.Study, size: int) -> bool:
    """Every grid point finished or failed for good (none waiting): more trials would repeat points."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return False
    tried = {json.dumps(t.params, sort_keys=True) for t in trials if t.state in (*FINISHED, TrialState.FAIL)}
    return len(tried) >= size


def optimize(study: optuna.Study, objective: Objective, target: int, console: Console, grid: int | None,
             before_trial: Callable[[optuna.Study], bool] | None = None) -> None:
    """Run trials one at a time until ``target`` are finished; stop after repeated failures.

    ``before_trial(study)`` is asked before each trial and ends the search by returning False (--budget: the
    next trial would not fit in the time left; it may also enqueue the next trial's values).
    """
    failures = 0
    while finished(study) < target:
        if grid is not None and _grid_exhausted(study, grid):
            console.print("every grid point has been tried; stopping")
            return
        if before_trial is not None and not before_trial(study):
            return
        try:
            study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
        except KeyboardInterrupt:
            _requeue_last(study)
            raise
        write_trials(study, objective.base, objective.out)
        last = study.trials[-1]
        if last.state == TrialState.FAIL:
            failures += 1
            if failures >= MAX_FAILURES_IN_ROW:
                raise DataError(f"{failures} trials in a row failed; the last: {last.user_attrs.get('error')}")
        else:
            failures = 0
            value = f"{last.value:.4f}" if last.value is not None else "–"
            console.print(f"trial {last.number}: {last.state.name.lower()} · {objective.metric} {value} · "
                          f"{finished(study)}/{target} finished")


def _requeue_last(study: optuna.Study) -> None:
    """Ctrl-C mid-trial: the trial is FAIL now; enqueue its values so the next run tries them again."""
    last = study.trials[-1] if study.trials else None
    if last is not None and last.state == TrialState.FAIL and last.params:
        study.enqueue_trial(last.params, user_attrs=carried_attrs(last) | {"retry_of": last.number})


# ------------------------------------------------------------------------------------------ entry point


def tune(recipe: Recipe, console: Console) -> TuneResult:
    """`tailor tune`: check the search, open (or resume) the study, run the trials, write the outputs."""
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
        study = open_study(recipe, out, metric, direction)
        recover_interrupted(study, console)
        done = finished(study)
        if done:
            console.print(f"resuming: {done} of {target} trials already finished")
        objective = Objective(recipe, out, metric, direction == "maximize", console)
        try:
            optimize(study, objective, target, console, grid)
        finally:
            files = write_outputs(study, recipe, out, metric, direction)
    return TuneResult(out, metric, direction, best_trial(study), counts(study), files)


def summary_line(result: TuneResult) -> str:
    best = result.best
    if best is None:
        return "no trial finished"
    params: dict[str, Any] = best.params
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
    return f"best: trial {best.number}, validation {result.metric} {best.value:.4f} ({shown})"
