"""MLflow: a run directory logged as one MLflow run, and --seeds / k-fold / tune as a parent run with children.

Why MLflow through ``MlflowClient`` only (never the fluent ``mlflow.start_run``): the fluent API keeps a global
active run, which a failing run, a tuner or a test could leave open for the next one; a client call names its
run. Why after the run: the run directory is the record (metrics.json, curves, report); tracking copies it into
a store where many runs can be searched and compared, so it never changes what a run computes.

The store: ``tracking.uri``, by default ``sqlite:///<parent of output_dir>/mlflow.db`` (the runs of one project
in one file; MLflow's file store is deprecated, so ``./mlruns`` is never used), artifacts next to it in
``mlartifacts/``. Problems with the URI are found before training starts (``start_tracking``); a problem while
logging a finished run only warns: the run directory is complete either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tailorlm.errors import RecipeError, UserError
from tailorlm.recipe import Recipe
from tailorlm.track.flatten import (
    GROUP_METRIC_SECTIONS,
    curve_points,
    read_json,
    recipe_params,
    run_metrics,
    run_tags,
    tune_metrics,
)

NOT_INSTALLED = "tracking.mlflow is on but MLflow is not installed; pip install 'tailorlm[tracking]'"
#: files of a run directory (or a --seeds / k-fold / tune folder) copied as artifacts when present
RUN_ARTIFACTS = ("metrics.json", "recipe.resolved.yaml", "run_info.json", "data_report.json", "report.html",
                 "report.md", "rejects.jsonl", "log_history.json")
GROUP_ARTIFACTS = (*RUN_ARTIFACTS, "folds.json", "tune.json", "trials.csv", "best_recipe.yaml", "tune_report.html")
#: MLflow's limits on one log_batch call
_BATCH_PARAMS, _BATCH_METRICS, _BATCH_TAGS = 100, 1000, 100
#: the URI check must answer in seconds, not after MLflow's default 7 retries with backoff
_PROBE_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def _mlflow() -> Any:
    """Import MLflow quietly and without telemetry (nothing leaves the machine unless the URI is a server)."""
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mlflow
            from mlflow.tracking import MlflowClient  # noqa: F401  (fails early when the install is incomplete)
    except ImportError:
        raise UserError(NOT_INSTALLED) from None
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
    return mlflow


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _now_ms() -> int:
    return int(time.time() * 1000)


# ------------------------------------------------------------------------------------------ the store


def tracking_uri(recipe: Recipe) -> str:
    """``tracking.uri`` as given, or the SQLite file beside the run directory (one per project folder)."""
    if recipe.tracking.uri:
        return recipe.tracking.uri.strip()
    parent = Path(recipe.output_dir).expanduser().resolve().parent
    return f"sqlite:///{parent / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URI (None for a server)."""
    if not uri.lower().startswith("sqlite:"):
        return None
    return Path(uri.split("sqlite:///", 1)[1]) if "sqlite:///" in uri else Path()


def _bad_uri(uri: str, problem: str) -> RecipeError:
    return RecipeError(f"tracking.uri '{uri}': {problem}; set tracking.uri to sqlite:////ABSOLUTE/PATH/mlflow.db "
                       "or an http(s):// MLflow server, or leave it unset for <parent of output_dir>/mlflow.db")


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@cache
def check_uri(uri: str) -> None:
    """Open the store once before any work: a typo in the URI must not cost a whole training run.

    Cached per process: a --seeds, k-fold or tune run checks its store once, not once per child.
    """
    scheme = urlparse(uri).scheme.lower()
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path is None or not str(path) or str(path) in (".", ":memory:"):
            raise _bad_uri(uri, "names no database file (an in-memory database would lose the runs)")
        try:
            path.expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _bad_uri(uri, f"cannot create the folder {path.parent} ({exc.strerror})") from None
    elif scheme in ("http", "https"):
        if not urlparse(uri).hostname:
            raise _bad_uri(uri, "has no host")
    else:
        raise _bad_uri(uri, "is not a sqlite:/// or http(s):// URI (MLflow's file store and ./mlruns are not used)")
    try:
        with _env(_PROBE_ENV):
            _client(uri).search_experiments(max_results=1)
    except Exception as exc:
        what = "cannot open the MLflow database" if scheme == "sqlite" else "cannot reach the MLflow server"
        raise _bad_uri(uri, f"{what} ({_one_line(exc, 200)})") from None


def experiment_name(recipe: Recipe) -> str:
    """``tracking.experiment``, or task/train-file stem (``classification/airline``): runs on the same data meet."""
    if recipe.tracking.experiment:
        return recipe.tracking.experiment
    train = recipe.data.train
    return f"{recipe.task}/{Path(train).stem}" if train else recipe.task


def experiment_id(client: Any, name: str, uri: str) -> str:
    """The experiment's id, creating it with its artifacts beside a SQLite store (never in ./mlruns)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)
    db = sqlite_path(uri)
    location = (db.expanduser().resolve().parent / "mlartifacts").as_uri() if db is not None else None
    try:
        return str(client.create_experiment(name, artifact_location=location))
    except Exception:  # created meanwhile by a parallel run: use that one
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return str(found.experiment_id)


# ------------------------------------------------------------------------------------------ logging


@dataclass
class _Parent:
    """The MLflow run of a --seeds, k-fold or tune folder; runs started inside it become its children."""

    client: Any
    uri: str
    experiment_id: str
    run_id: str
    last_child: str | None = None


_PARENT: ContextVar[_Parent | None] = ContextVar("tailorlm_track_parent", default=None)


def _open_run(recipe: Recipe, start_ms: int | None = None) -> _Parent:
    """Create an MLflow run: under the enclosing parent when there is one (its store and experiment).

    A child is named after its folder (seed-42, fold-1, trial-003) even when ``tracking.run_name`` is set: the
    copies of the recipe that --seeds, k-fold and tune make all carry the parent's name.
    """
    parent = _PARENT.get()
    uri = parent.uri if parent else tracking_uri(recipe)
    check_uri(uri)
    client = parent.client if parent else _client(uri)
    exp = parent.experiment_id if parent else experiment_id(client, experiment_name(recipe), uri)
    folder = Path(recipe.output_dir).name
    name = folder if parent else recipe.tracking.run_name or folder
    tags = {"mlflow.parentRunId": parent.run_id} if parent else {}
    run = client.create_run(exp, start_time=start_ms or _now_ms(), tags=tags, run_name=name)
    if parent:
        parent.last_child = run.info.run_id
    return _Parent(client, uri, exp, run.info.run_id)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _log_values(run: _Parent, params: dict[str, str], metrics: dict[str, float],
                curves: list[tuple[str, float, int]], tags: dict[str, str]) -> None:
    """Everything in a few batched calls: one call per value is slow on SQLite and on a server."""
    from mlflow.entities import Metric, Param, RunTag

    now = _now_ms()
    param_list = [Param(k, v) for k, v in params.items()]
    metric_list = [Metric(k, v, now, 0) for k, v in metrics.items()]
    metric_list += [Metric(k, v, now, step) for k, v, step in curves]
    tag_list = [RunTag(k, v) for k, v in tags.items()]
    for batch in _chunks(param_list, _BATCH_PARAMS):
        run.client.log_batch(run.run_id, params=batch)
    for batch in _chunks(metric_list, _BATCH_METRICS):
        run.client.log_batch(run.run_id, metrics=batch)
    for batch in _chunks(tag_list, _BATCH_TAGS):
        run.client.log_batch(run.run_id, tags=batch)


def _log_files(run: _Parent, folder: Path, names: tuple[str, ...], model: bool) -> None:
    for name in names:
        if (folder / name).is_file():
            run.client.log_artifact(run.run_id, str(folder / name))
    if model and (folder / "model").is_dir():
        run.client.log_artifacts(run.run_id, str(folder / "model"), artifact_path="model")


def outcome(exc: BaseException | None) -> tuple[str, str]:
    """(status tag, MLflow run status): Ctrl-C and a pruned tune trial are KILLED, other errors FAILED."""
    if exc is None:
        return "finished", "FINISHED"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "KILLED"
    if type(exc).__name__ == "TrialPruned":  # optuna's, without importing optuna here
        return "pruned", "KILLED"
    return "failed", "FAILED"


def _error_tags(exc: BaseException | None) -> dict[str, str]:
    return {} if exc is None else {"error": f"{type(exc).__name__}: {_one_line(exc, 500)}"}


def _announce(console: Any, recipe: Recipe, run_id: str) -> None:
    if console is not None:
        console.print(f"MLflow: run {run_id} in experiment '{experiment_name(recipe)}' at {tracking_uri(recipe)}",
                      markup=False, highlight=False)


def _warn(console: Any, exc: Exception) -> None:
    line = f"warning: the run was not fully logged to MLflow ({type(exc).__name__}: {_one_line(exc, 200)})"
    if console is not None:
        console.print(line, markup=False, highlight=False)


# ------------------------------------------------------------------------------------------ one run


@dataclass
class Tracker:
    """One ``run.run``: checked at its start, logged at its end. ``recipe`` None: tracking is off (no-ops)."""

    recipe: Recipe | None = None
    started_ms: int = 0

    def finished(self, run_dir: Path, console: Any = None) -> None:
        self._log(run_dir, None, console)

    def failed(self, run_dir: Path, exc: BaseException, console: Any = None) -> None:
        self._log(run_dir, exc, console)

    def _log(self, run_dir: Path, exc: BaseException | None, console: Any) -> None:
        if self.recipe is None:
            return
        try:
            run_id = log_run_dir(self.recipe, Path(run_dir), exc, self.started_ms)
        except Exception as problem:  # the run directory is complete: a logging problem must not fail the run
            _warn(console, problem)
            return
        if _PARENT.get() is None:  # a child is announced with its parent
            _announce(console, self.recipe, run_id)


def start_tracking(recipe: Recipe) -> Tracker:
    """Before any work: MLflow importable and the store reachable, or a one-line error (exit 2)."""
    if not recipe.tracking.mlflow:
        return Tracker()
    _mlflow()
    parent = _PARENT.get()
    check_uri(parent.uri if parent else tracking_uri(recipe))
    return Tracker(recipe, _now_ms())


def log_run_dir(recipe: Recipe, run_dir: Path, exc: BaseException | None = None,
                started_ms: int | None = None) -> str:
    """Log a run directory as one MLflow run (a child of the enclosing parent, if any); returns its run id."""
    run = _open_run(recipe, started_ms)
    status, mlflow_status = outcome(exc)
    try:
        history = read_json(run_dir / "log_history.json")
        tags = run_tags(recipe, run_dir, read_json(run_dir / "run_info.json"), status) | _error_tags(exc)
        _log_values(run, recipe_params(recipe), run_metrics(read_json(run_dir / "metrics.json")),
                    curve_points(history if isinstance(history, list) else []), tags)
        _log_files(run, run_dir, RUN_ARTIFACTS, recipe.tracking.log_model)
    except BaseException:
        run.client.set_terminated(run.run_id, "FAILED")
        raise
    run.client.set_terminated(run.run_id, mlflow_status, _now_ms())
    return run.run_id


# ------------------------------------------------------------------------------------------ parent runs


@contextlib.contextmanager
def tracked_group(recipe: Recipe, folder: Path, kind: str, console: Any = None) -> Iterator[_Parent | None]:
    """A parent MLflow run around --seeds, k-fold or tune; every run.run inside it logs as its child.

    The parent is created first (children name it), and gets the folder's summary (mean/std, best trial) and
    files when the block ends; an exception marks it FAILED (or KILLED) and goes on.
    """
    from tailorlm.train.distributed import is_main_process

    if not recipe.tracking.mlflow or not is_main_process():
        yield None
        return
    _mlflow()
    parent = _open_run(recipe)
    parent.client.set_tag(parent.run_id, "kind", kind)
    token = _PARENT.set(parent)
    error: BaseException | None = None
    try:
        yield parent
    except BaseException as exc:
        error = exc
        raise
    finally:
        _PARENT.reset(token)
        _finish_group(recipe, Path(folder), parent, kind, error, console)


def _finish_group(recipe: Recipe, folder: Path, parent: _Parent, kind: str, exc: BaseException | None,
                  console: Any) -> None:
    status, mlflow_status = outcome(exc)
    try:
        info = read_json(folder / "run_info.json")
        metrics = run_metrics(read_json(folder / "metrics.json"), GROUP_METRIC_SECTIONS)
        metrics |= tune_metrics(read_json(folder / "tune.json"))
        tags = run_tags(recipe, folder, info, status) | {"kind": kind} | _error_tags(exc)
        _log_values(parent, recipe_params(recipe), metrics, [], tags)
        _log_files(parent, folder, GROUP_ARTIFACTS, model=False)
        parent.client.set_terminated(parent.run_id, mlflow_status, _now_ms())
    except Exception as problem:
        _warn(console, problem)
        return
    if _PARENT.get() is None:
        _announce(console, recipe, parent.run_id)


def note_trial(number: int, metric: str, value: float) -> None:
    """A tune trial's objective: on the study's run as a curve over trial numbers, and on the trial's own run."""
    parent = _PARENT.get()
    if parent is None:
        return
    from mlflow.entities import Metric

    now = _now_ms()
    parent.client.log_batch(parent.run_id, metrics=[Metric(f"trial.{metric}", float(value), now, number)])
    if parent.last_child:
        parent.client.log_batch(parent.last_child, metrics=[Metric(f"objective.{metric}", float(value), now, 0)])
        parent.client.set_tag(parent.last_child, "tune.trial", str(number))
