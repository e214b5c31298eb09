"""One trial: the normal pipeline with the trial's values as overrides, scored on validation, pruned early.

A trial is an ordinary run directory (``output_dir/trials/trial-NNN``) made by ``tailorlm.run.run``, so every
trial can be opened, reported and compared like any run. Differences from ``tailor run``, to keep tuning cheap:
- the baselines are skipped (``search.baselines: true`` keeps them); the test split is still evaluated, but the
  objective is the validation metric: choosing by test score would make the test score optimistic;
- only the best trial keeps its weights: a finished trial that is not the best so far loses ``model/``, and a
  new best deletes the previous best's. Every trial keeps its metrics, logs and report, and best_recipe.yaml
  retrains the winner anyway.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from transformers import TrainerCallback

from tailorlm.errors import RecipeError, UserError
from tailorlm.recipe import Recipe, apply_overrides, recipe_from_dict
from tailorlm.rundir import RunDir
from tailorlm.track import note_trial
from tailorlm.tune.space import overrides, suggest

#: what a trial may leave behind that is large and not needed once it is scored
WEIGHT_DIRS = ("model", "model_merged", "checkpoints")


class TrialFailed(Exception):
    """A trial that failed for its own reasons (e.g. its learning rate diverged): recorded, the study goes on."""


class MetricMissing(RecipeError):
    """search.metric names no validation metric: every trial would fail the same way, so the study stops."""


class PruningCallback(TrainerCallback):
    """Feeds each validation score to the Optuna trial and stops training when the pruner says so.

    The last evaluation is reported but never pruned: a trial that has finished training is worth its result. Nor is
    a trial marked ``unpruned`` (a budget's last trial: tune/budget.py ``enqueue_planned``).
    ``by_evaluation``: the pruner's step is the evaluation's number (1, 2, ...) rather than the optimizer step, so
    trials whose batch sizes differ are compared after the same number of passes over the data (--budget).
    """

    def __init__(self, trial: optuna.Trial, metric: str, by_evaluation: bool = False) -> None:
        self.trial = trial
        self.key = f"eval_{metric}"
        self.by_evaluation = by_evaluation
        self.evaluations = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None,
                    **kwargs: Any) -> None:
        value = (metrics or {}).get(self.key)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return
        self.evaluations += 1
        self.trial.report(float(value), step=self.evaluations if self.by_evaluation else state.global_step)
        if state.global_step < state.max_steps and not self.trial.user_attrs.get("unpruned") and \
                self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {state.global_step} ({self.key} {value:.4f})")


def trial_recipe(base: Recipe, params: dict[str, Any], output_dir: Path, *, baselines: bool) -> Recipe:
    """The base recipe with the trial's values applied the way --set applies them, without the search section."""
    raw = base.model_dump(mode="json")
    raw.pop("search", None)
    apply_overrides(raw, overrides(params))
    raw["output_dir"] = str(output_dir)
    if not baselines:
        raw["baseline"]["zero_shot"] = raw["baseline"]["linear_probe"] = False
    return recipe_from_dict(raw, f"trial values {params}")


def drop_weights(run_dir: Path) -> None:
    """Delete a trial's weights (and a k-fold trial's per-fold weights); metrics and reports stay."""
    for folder in [run_dir, *sorted((run_dir / "folds").glob("fold-*"))]:
        for name in WEIGHT_DIRS:
            shutil.rmtree(folder / name, ignore_errors=True)


def worker_id() -> str:
    """``host:pid`` of the process running a trial, kept in the trial: a later start on the same machine can tell
    a trial whose process died (re-queue it) from one another process is still running (leave it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def parse_worker(value: Any) -> tuple[str, int] | None:
    """(host, pid) from :func:`worker_id`'s text, or None when the trial has none (or it is malformed)."""
    host, _, pid = str(value or "").rpartition(":")
    return (host, int(pid)) if host and pid.isdigit() else None


def validation_score(metrics: dict[str, Any], metric: str) -> float:
    """The objective: the kept checkpoint's validation metric, or its mean over folds."""
    cv = metrics.get("cv")
    scores = cv["validation"]["mean"] if cv else metrics.get("validation") or {}
    value = scores.get(metric)
    if not isinstance(value, (int, float)):
        known = ", ".join(k for k in scores if k not in ("epoch", "step")) or "none"
        raise MetricMissing(f"search.metric '{metric}': not a validation metric of this task; choose one of: {known}")
    return float(value)


@dataclass
class Objective:
    """Callable Optuna objective: suggest, run the pipeline, score, keep only the best weights."""

    base: Recipe
    out: Path
    metric: str
    maximize: bool
    console: Console
    #: more Trainer callbacks for every trial (--budget's time limit, tune/budget.py)
    extra_callbacks: list[Any] = field(default_factory=list)
    #: the pruner's step: the evaluation's number instead of the optimizer step (PruningCallback)
    by_evaluation: bool = False
    #: called once the trial exists in the storage (study.optimize: the slot lock is released then)
    on_start: Callable[[], None] | None = None
    #: the number of the trial this process runs (or ran last), for re-queueing it on Ctrl-C
    current: int | None = None

    def __call__(self, trial: optuna.Trial) -> float:
        self.current = trial.number
        trial.set_user_attr("worker", worker_id())
        if self.on_start is not None:
            self.on_start()
        try:
            return self._run_trial(trial)
        except (optuna.TrialPruned, MetricMissing):
            raise
        except UserError as exc:
            trial.set_user_attr("error", str(exc)[:500])
            self.console.print(f"[red]trial {trial.number} failed:[/] {exc}")
            raise TrialFailed(str(exc)) from exc

    def trial_dir(self, number: int) -> Path:
        return self.out / "trials" / f"trial-{number:03d}"

    def _run_trial(self, trial: optuna.Trial) -> float:
        params = suggest(trial, self.base)
        folder = self.trial_dir(trial.number)
        trial.set_user_attr("dir", str(folder))
        # an enqueued trial may ask for the baselines (--budget's defaults trial measures what they cost)
        baselines = self.base.search.baselines or bool(trial.user_attrs.get("baselines"))
        recipe = trial_recipe(self.base, params, folder, baselines=baselines)
        shown = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        self.console.print(f"[bold]trial {trial.number}[/]: {shown}")
        try:
            value = validation_score(self._pipeline(recipe, trial), self.metric)
        except optuna.TrialPruned as exc:
            RunDir(folder).set_status("pruned", reason=str(exc))
            drop_weights(folder)
            raise
        except BaseException:
            drop_weights(folder)
            raise
        self._keep_if_best(trial, value, folder)
        note_trial(trial.number, self.metric, value)  # tracking: the objective on the study's and the trial's run
        return value

    def _pipeline(self, recipe: Recipe, trial: optuna.Trial) -> dict[str, Any]:
        """The normal pipeline; with k-fold, the running mean over folds is what the pruner sees."""
        from tailorlm.run import run as run_pipeline

        if not recipe.validation.kfold:
            pruning = PruningCallback(trial, self.metric, by_evaluation=self.by_evaluation)
            return run_pipeline(recipe, self.console, extra_callbacks=[pruning, *self.extra_callbacks])
        from tailorlm.tune.cv import run_cv

        k = recipe.validation.kfold

        def on_fold(index: int, summary: dict[str, Any]) -> None:
            mean = summary["validation"]["mean"].get(self.metric)
            if mean is None:
                return
            trial.report(float(mean), step=index + 1)
            if index + 1 < k and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {index + 1} (mean {self.metric} {mean:.4f})")

        return run_cv(recipe, self.console, on_fold=on_fold)

    def _keep_if_best(self, trial: optuna.Trial, value: float, folder: Path) -> None:
        """Keep this trial's weights only if it beats every finished trial; drop the previous best's."""
        done = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        scores = [t.value for t in done if t.value is not None]
        best = (max if self.maximize else min)(scores, default=None)
        if best is None or (value > best if self.maximize else value < best):
            for other in done:
                drop_weights(Path(other.user_attrs.get("dir", self.trial_dir(other.number))))
            trial.set_user_attr("weights", "kept")
        else:
            drop_weights(folder)
