"""``tailor run RECIPE --budget 20m``: a small automatic search within a wall-clock budget, then the winner's run.

A user short of time and of hyperparameter lore names a time, not a search space. The budget run:
1. resolves what ``auto`` would pick for this data and model (``probe_defaults``: the same train/auto.py calls
   run.py makes) and builds the space around it: learning rate log-uniform in [auto/5, auto*5], epochs in
   [auto/3, auto*1.5], batch size {auto/2, auto, auto*2} and, with LoRA, r {r/2, r, 2r} (generation: rate and r
   only, as its epochs are few and long);
2. runs an ordinary `tailor tune` study in ``output_dir/search/`` (study.db, trials/, trials.csv, tune.json,
   tune_report.html; resumable: the same command again continues it): Optuna's TPE sampler, successive halving
   on the validation score after each evaluation. Trial 0 is the defaults, enqueued, with the baselines on, so
   the report can say what ``auto`` alone scores and the planner knows what the baselines cost;
3. keeps to the budget with ``budget_plan`` (the rule is in its docstring): before each trial, the epochs that
   fit at the measured speed, leaving time to retrain the best trial; during a trial, a callback that stops it
   at its deadline;
4. makes the winner's run the result in ``output_dir`` and adds ``search`` to its metrics.json: the trials, the
   defaults' score, budget_s and wall_s. The winner is not retrained: a winning defaults trial ran with the
   baselines, so its run directory is copied (``adopt_trial``; it may train until the budget's last tenth); any
   other winner's run is copied with the defaults trial's baselines merged in (tune/adopt.py), so a trial need not
   keep time back to be trained again. Only when no trial measured the baselines (or nothing completed: the
   defaults) is a normal ``run.run`` trained into ``output_dir`` with baselines and the full report.

Each invocation gets the whole budget; trials of earlier invocations are kept and count (TPE learns from them,
the defaults are not run again).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from transformers import TrainerCallback

from tailorlm.errors import RecipeError, UserError
from tailorlm.lifecycle import group_run
from tailorlm.recipe import ParamSpec, Recipe, budget_seconds, recipe_from_dict
from tailorlm.rundir import RunDir, atomic_write_json
from tailorlm.track import start_tracking
from tailorlm.tune.adopt import adopt_trial, adopt_with_baselines, baseline_source, has_run, reusable
from tailorlm.tune.budget_plan import ADOPT_S, FINAL_SLACK_S, Costs, Plan, TrialTimes, plan_next
from tailorlm.tune.objective import Objective, trial_recipe
from tailorlm.tune.outputs import best_trial, counts, trial_rows, write_outputs
from tailorlm.tune.study import (
    FINISHED,
    check_recipe,
    finished,
    open_study,
    optimize,
    recover_interrupted,
    resolve_metric,
    study_lock,
)

Clock = Callable[[], float]

#: the learning rate is searched in [default / LR_FACTOR, default * LR_FACTOR] (log scale)
LR_FACTOR = 5.0
#: TPE's random start-up trials, the defaults trial included: a budget leaves room for few trials in all
STARTUP_TRIALS = 3
#: successive halving keeps the best third at each rung
REDUCTION_FACTOR = 3
#: finished trials at most in one invocation (unless search.trials is set): beyond it TPE gains little
MAX_TRIALS = 100
#: recipe keys the budget searches
LR, EPOCHS, BATCH, LORA_R = "training.learning_rate", "training.epochs", "training.batch_size", "model.peft.r"


class OutOfTime(UserError):
    """A trial reached its deadline before its first evaluation: it measured nothing, so it counts as failed."""


# ------------------------------------------------------------------------------------------ the recipe


def check_budget_recipe(recipe: Recipe) -> None:
    """Settings that a budget search cannot honour, refused in one line rather than ignored."""
    search, t = recipe.search, recipe.training
    if search.space:
        raise RecipeError("search.space: --budget searches its own space (learning rate, epochs, batch size, LoRA "
                          "r); remove search.space, or search it with `tailor tune`")
    if search.method != "bayes":
        raise RecipeError(f"search.method '{search.method}': --budget uses TPE (bayes); remove search.method")
    if "pruner" in search.model_fields_set and search.pruner != "halving":
        raise RecipeError(f"search.pruner '{search.pruner}': --budget uses successive halving; remove search.pruner")
    if recipe.validation.kfold:
        raise RecipeError("validation.kfold: --budget scores trials on one validation split; set validation.kfold: 0")
    if t.seeds > 1:
        raise RecipeError("training.seeds: --budget trains one seed; set training.seeds: 1 (or repeat the winner's "
                          "resolved recipe with --seeds)")
    if t.num_processes > 1:
        raise RecipeError("training.num_processes: --budget runs in one process; set training.num_processes: 1")
    if search.workers > 1 or search.storage is not None:
        key = "search.workers" if search.workers > 1 else "search.storage"
        raise RecipeError(f"{key}: --budget plans each trial from the ones before it, in one process on its own "
                          f"study; remove {key}, or search in parallel with `tailor tune --workers N`")
    if t.resume == "always":
        raise RecipeError("training.resume: always (--resume) continues one interrupted run; a --budget run "
                          "continues its search when the same command is run again: drop --resume")


@dataclass(frozen=True)
class Defaults:
    """The recipe's own values with ``auto`` resolved: the defaults trial, and the centre of the space."""

    params: dict[str, Any]
    reasons: dict[str, str]
    train_rows: int


def probe_defaults(recipe: Recipe) -> Defaults:
    """What a plain `tailor run` of this recipe would train with: the data is prepared and the model built (the
    auto learning rate depends on its size) exactly as run.py does; nothing is written."""
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.peft import apply_lora
    from tailorlm.models.registry import resolve_model
    from tailorlm.stages.data import token_counter
    from tailorlm.tasks import get_task
    from tailorlm.train import auto

    task = get_task(recipe.task)
    probe = recipe.model_copy(deep=True)
    resolved = resolve_model(str(probe.model.name), allow_pickle=probe.model.allow_pickle)
    data = task.prepare_data(probe, token_counter(load_tokenizer(resolved, probe.model)))
    chosen = auto.resolve_data_dependent(probe, len(data.train)) | task.resolve_auto(probe, data, resolved)
    t, lora = probe.training, probe.model.peft.method == "lora"
    if isinstance(t.learning_rate, (int, float)):
        rate = float(t.learning_rate)
    else:  # auto (or find: the search needs a number to centre on; the range test is not run per trial)
        model = task.build_model(resolved, probe, data)
        if lora:
            model = apply_lora(model, probe.model.peft, task.peft_task_type)
        choice = auto.choose_learning_rate(task.name, auto.body_parameters(model), lora, model)
        chosen[LR], rate = choice, float(choice.value)
        del model
    params: dict[str, Any] = {LR: rate, EPOCHS: max(1, round(float(t.epochs))), BATCH: int(t.batch_size)}
    if lora:
        params[LORA_R] = probe.model.peft.r
    return Defaults(params, {key: c.reason for key, c in chosen.items()}, len(data.train))


def budget_space(recipe: Recipe, defaults: Defaults) -> dict[str, ParamSpec]:
    """The space around the defaults (module docstring); every value is a valid recipe value."""
    p = defaults.params
    rate = p[LR]
    space = {LR: ParamSpec(type="loguniform", low=float(f"{rate / LR_FACTOR:.3g}"),
                           high=float(f"{rate * LR_FACTOR:.3g}"))}
    if recipe.task != "generation":
        epochs, batch = p[EPOCHS], p[BATCH]
        low = max(1, round(epochs / 3))
        space[EPOCHS] = ParamSpec(type="int", low=low, high=max(low + 1, math.ceil(epochs * 1.5)))
        space[BATCH] = ParamSpec(type="categorical", choices=sorted({max(1, batch // 2), batch, batch * 2}))
    if LORA_R in p:
        r = p[LORA_R]
        space[LORA_R] = ParamSpec(type="categorical", choices=sorted({max(1, r // 2), r, r * 2}))
    return space


def epoch_range(space: dict[str, ParamSpec], defaults: Defaults) -> tuple[int, int]:
    spec = space.get(EPOCHS)
    if spec is None:  # not searched: every trial trains the defaults' epochs
        return defaults.params[EPOCHS], defaults.params[EPOCHS]
    return int(spec.low or 1), int(spec.high or 1)


def search_recipe(recipe: Recipe, space: dict[str, ParamSpec]) -> Recipe:
    """The recipe `tailor tune` would get for this search, writing into ``output_dir/search``."""
    raw = recipe.model_dump(mode="json")
    raw["search"] |= {"method": "bayes", "pruner": "halving",
                      "space": {k: v.model_dump(mode="json", exclude_none=True) for k, v in space.items()}}
    raw["output_dir"] = str(Path(recipe.output_dir) / "search")
    return recipe_from_dict(raw, "the --budget search")


# ------------------------------------------------------------------------------------------ the clock


class DeadlineCallback(TrainerCallback):
    """Stops a trial's training at the deadline the planner set: pruned at its last evaluation, or failed
    (``OutOfTime``) when it has none, since a trial without a score tells the sampler nothing."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.deadline = math.inf
        self.evaluations = 0
        #: the defaults trial is never retrained: at its deadline it ends at its best checkpoint, complete
        self.graceful = False
        self.stopped_at: int | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.evaluations = 0
        self.stopped_at = None

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.evaluations += 1

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.clock() <= self.deadline:
            return
        if self.evaluations and self.graceful:
            self.stopped_at = state.global_step
            control.should_training_stop = True  # the Trainer reloads the best checkpoint, as early stopping does
            return
        if self.evaluations:
            raise optuna.TrialPruned(f"stopped by the time budget at step {state.global_step}, after "
                                     f"{self.evaluations} evaluation(s)")
        raise OutOfTime("stopped by the time budget before its first evaluation")


def trial_times(trial: FrozenTrial) -> TrialTimes | None:
    """A complete trial's stage timings from its metrics.json (None when the file is missing)."""
    path = Path(trial.user_attrs.get("dir", "")) / "metrics.json"
    if trial.duration is None or not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    stages = metrics.get("timings_s") or {}
    return TrialTimes(
        duration_s=trial.duration.total_seconds(),
        pre_s=sum(float(stages.get(k) or 0.0) for k in ("prepare", "tokenize", "adapt")),
        baselines_s=float(stages.get("baselines") or 0.0),
        train_s=float(stages.get("train") or 0.0),
        epochs_run=float((metrics.get("train") or {}).get("epochs_run") or 0.0),
    )


@dataclass
class Scheduler:
    """Asked before every trial (``optimize(before_trial=...)``): plan it, or end the search."""

    end: float
    clock: Clock
    epochs: tuple[int, int]
    console: Console
    all_baselines: bool = False
    stopped: str = ""
    reserve_s: float | None = None
    #: a winner would be adopted, not retrained: the defaults trial measured the baselines (tune/adopt.py)
    adopts: bool = False

    def __post_init__(self) -> None:
        self.callback = DeadlineCallback(self.clock)

    def costs(self, study: optuna.Study) -> tuple[Costs | None, float | None]:
        """The cost model from the complete trials, and the final run's time if the best one so far wins."""
        times = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
        measured = {n: m for n, t in times.items() if (m := trial_times(t)) is not None}
        costs = Costs.from_trials(list(measured.values()))
        best = best_trial(study)
        reserve = costs.final_s(measured[best.number]) if costs and best and best.number in measured else None
        if best is not None and reusable(best):
            reserve = FINAL_SLACK_S  # the defaults trial's run is copied, not retrained
        elif best is not None and self.adopts:
            reserve = ADOPT_S  # its run is adopted with the defaults trial's baselines (tune/adopt.py)
        return costs, reserve

    def __call__(self, study: optuna.Study) -> bool:
        self.adopts = baseline_source(study) is not None
        costs, self.reserve_s = self.costs(study)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        next_defaults = bool(waiting) and waiting[0].user_attrs.get("role") == "defaults"
        if costs is None and not next_defaults:
            return self._stop("no trial has completed to plan from, and the defaults trial has been tried")
        plan = plan_next(self.clock(), self.end, costs, self.reserve_s, self.epochs,
                         runs_baselines=next_defaults or self.all_baselines, retrained=not self.adopts)
        if plan.kind == "stop":
            return self._stop(plan.reason)
        if not waiting and (plan.kind == "epochs" or plan.last):
            enqueue_planned(study, plan)
        self.callback.deadline = plan.deadline
        self.callback.graceful = next_defaults
        return True

    def _stop(self, reason: str) -> bool:
        self.stopped = reason
        self.console.print(f"budget: no further trial ({reason})")
        return False


def enqueue_planned(study: optuna.Study, plan: Plan) -> None:
    """The next trial as planned: its epochs fixed to the most that fit, and, when no trial can follow it, marked
    ``unpruned`` (tune/objective.py ``PruningCallback``): pruning the last trial frees time nothing can use."""
    params = {EPOCHS: plan.epochs} if plan.kind == "epochs" else {}
    notes = [f"epochs fixed to {plan.epochs}: the most that fit in the time left"] if params else []
    if plan.last:
        notes.append("the last trial that fits: not pruned")
    study.enqueue_trial(params, user_attrs={"note": "; ".join(notes)} | ({"unpruned": True} if plan.last else {}))


# ------------------------------------------------------------------------------------------ entry point


@dataclass
class Phase:
    """Clock readings of one invocation, for metrics.json."""

    started: float
    probed: float = 0.0
    searched: float = 0.0


def run_with_budget(recipe: Recipe, console: Console | None = None, clock: Clock = time.monotonic,
                    started: float | None = None) -> dict[str, Any]:
    """Search within ``search.budget``, then train the winner into ``output_dir``; returns its metrics.json.

    ``started``: when the budget began (the CLI passes the moment the command started, imports included).
    """
    from tailorlm.safety import check_output_dir
    from tailorlm.tasks.defaults import fill_model_name

    console = console or Console(stderr=True)
    phase = Phase(clock() if started is None else started)
    budget_s = budget_seconds(str(recipe.search.budget))
    check_budget_recipe(recipe)
    fill_model_name(recipe)
    check_output_dir(recipe)
    start_tracking(recipe)  # tracking.mlflow: a bad tracking.uri fails before the first trial
    defaults = probe_defaults(recipe)
    space = budget_space(recipe, defaults)
    search = search_recipe(recipe, space)
    check_recipe(search)  # the space as `tailor tune` checks it; a validation split to score on
    metric, direction = resolve_metric(search)
    phase.probed = clock()
    console.print(f"budget {_seconds(budget_s)}: searching {', '.join(space)} in {search.output_dir} "
                  f"(trial 0 = the defaults: {_shown(defaults.params)}), then training the winner")
    out = RunDir.create(search.output_dir).path
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with study_lock(out):
        study, before = _open(search, out, metric, direction, defaults, console)
        scheduler = Scheduler(phase.started + budget_s, clock, epoch_range(space, defaults), console,
                              all_baselines=search.search.baselines)
        objective = Objective(search, out, metric, direction == "maximize", console,
                              extra_callbacks=[scheduler.callback], by_evaluation=True)
        target = search.search.trials if "trials" in recipe.search.model_fields_set else finished(study) + MAX_TRIALS
        with group_run(search, console, "tune"):  # lifecycle.py: status, SIGTERM, the study's MLflow parent
            try:
                optimize(study, objective, target, console, None, before_trial=scheduler)
            finally:
                write_outputs(study, search, out, metric, direction)
        phase.searched = clock()
        metrics = _final_run(recipe, search, study, defaults, console)
        wall = clock() - phase.started
        metrics["search"] = summary(study, search, defaults, metric, direction, budget_s, wall, phase, scheduler,
                                    before)
        _rewrite(recipe, metrics)
    console.print(f"budget: {_seconds(wall)} of {_seconds(budget_s)} used ({wall / budget_s:.0%})")
    return metrics


def _open(search: Recipe, out: Path, metric: str, direction: str, defaults: Defaults,
          console: Console) -> tuple[optuna.Study, int]:
    """The study with the budget's sampler and pruner, interrupted trials re-queued, the defaults trial queued."""
    study = open_study(search, out, metric, direction)
    before = len(study.trials)
    study.sampler = optuna.samplers.TPESampler(seed=search.training.seed + before, n_startup_trials=STARTUP_TRIALS)
    evals = defaults.params[EPOCHS] * search.training.evals_per_epoch
    study.pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, round(evals / 4)),
                                                          reduction_factor=REDUCTION_FACTOR)
    recover_interrupted(study, console)
    if defaults_trial(study, states=(*FINISHED, TrialState.WAITING)) is None:
        study.enqueue_trial(defaults.params, user_attrs={"role": "defaults", "baselines": True,
                                                         "note": "the defaults (auto)"})
    elif before:
        console.print(f"resuming the search in {out}: {finished(study)} trials already finished")
    return study, before


def defaults_trial(study: optuna.Study, states: tuple[TrialState, ...] = FINISHED) -> FrozenTrial | None:
    return next((t for t in study.get_trials(deepcopy=False, states=states)
                 if t.user_attrs.get("role") == "defaults"), None)


def _final_run(recipe: Recipe, search: Recipe, study: optuna.Study, defaults: Defaults,
               console: Console) -> dict[str, Any]:
    """The winner's run as the result in output_dir: copied (the defaults trial), adopted with the defaults
    trial's baselines (any other), or, when neither can be, trained again as a normal run (the defaults if no trial
    completed)."""
    from tailorlm.run import run as run_pipeline

    winner = best_trial(study)
    params = winner.params if winner is not None else defaults.params
    if winner is not None and reusable(winner):
        console.print(f"budget: the winner is trial {winner.number}, the defaults, which measured the baselines: "
                      "its run is the result (nothing retrained)")
        return adopt_trial(Path(winner.user_attrs["dir"]), Path(recipe.output_dir))
    final = trial_recipe(search, params, Path(recipe.output_dir), baselines=True)
    source = baseline_source(study)
    if winner is not None and source is not None and has_run(winner):
        adopted = adopt_with_baselines(winner, source, final)
        if adopted is not None:
            console.print(f"budget: the winner is trial {winner.number} ({_shown(params)}); its run is the result, "
                          f"with the baselines the defaults trial measured on the same test rows (nothing retrained)")
            return adopted
    if winner is None:
        console.print("budget: no trial completed within the budget; training the defaults")
    else:
        console.print(f"budget: training the winner, trial {winner.number} ({_shown(params)}), with baselines")
    return run_pipeline(final, console)


def _rewrite(recipe: Recipe, metrics: dict[str, Any]) -> None:
    from tailorlm.report import render_report

    atomic_write_json(Path(recipe.output_dir) / "metrics.json", metrics)
    render_report(Path(recipe.output_dir))


# ------------------------------------------------------------------------------------------ metrics.json


def _trial_scores(trial: FrozenTrial | None, metric: str) -> dict[str, Any] | None:
    """A trial's values, validation score and test score (from its metrics.json) for the summary."""
    if trial is None:
        return None
    path = Path(trial.user_attrs.get("dir", "")) / "metrics.json"
    tuned = json.loads(path.read_text(encoding="utf-8")).get("tuned") or {} if path.is_file() else {}
    test = tuned.get(metric)
    return {"trial": trial.number, "state": trial.state.name.lower(), "params": trial.params,
            "validation": trial.value, "test": test if isinstance(test, (int, float)) else None}


def summary(study: optuna.Study, search: Recipe, defaults: Defaults, metric: str, direction: str, budget_s: float,
            wall_s: float, phase: Phase, scheduler: Scheduler, before: int) -> dict[str, Any]:
    """metrics.json ``search``: what was searched, every trial, the defaults' score, time spent against the budget."""
    keys = list(search.search.space)
    rows = trial_rows(study, keys)
    best = best_trial(study)
    return {
        "budget": search.search.budget,
        "budget_s": round(budget_s, 1),
        "wall_s": round(wall_s, 1),
        "wall_over_budget": round(wall_s / budget_s, 3),
        "time_s": {"probe": round(phase.probed - phase.started, 1), "search": round(phase.searched - phase.probed, 1),
                   "final_run": round(phase.started + wall_s - phase.searched, 1),
                   "final_run_estimate": None if scheduler.reserve_s is None else round(scheduler.reserve_s, 1)},
        "stopped": scheduler.stopped or "the trial limit was reached",
        "dir": str(search.output_dir),
        "metric": metric,
        "direction": direction,
        "sampler": f"TPE ({STARTUP_TRIALS} start-up trials, seed {search.training.seed} + trials before)",
        "pruner": f"successive halving per evaluation (reduction factor {REDUCTION_FACTOR})",
        "space": {k: v.model_dump(mode="json", exclude_none=True) for k, v in search.search.space.items()},
        "defaults": _trial_scores(defaults_trial(study), metric) or {"params": defaults.params},
        "defaults_reasons": defaults.reasons,
        "best": _trial_scores(best, metric),
        "counts": counts(study),
        "trials_before": before,
        "trials": [{k: row[k] for k in ("number", "state", "value", "duration_s", *keys, "note")} for row in rows],
    }


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def _shown(params: dict[str, Any]) -> str:
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v:.3g}" if isinstance(v, float) else f"{k.rsplit('.', 1)[-1]}={v}"
                     for k, v in params.items())

