"""One lifecycle for every run directory: a single run, ``--seeds``, k-fold and ``tailor tune``.

Before any work: tracking checked (a bad ``tracking.uri`` fails now), ``output_dir`` checked (never over data,
``/``, home or a folder of the user's), the folder created, the resolved recipe and ``run_info.json`` written,
``status.json`` "running". While it runs, SIGTERM is an interrupt. At the end ``status.json`` is "finished", or
"interrupted"/"failed" with the reason (and whether ``--resume`` can continue), and MLflow gets the folder.
A group (seeds, folds, trials) is one MLflow parent whose runs are its children.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from tailorlm.provenance import data_files, run_info
from tailorlm.recipe import Recipe, dump_recipe
from tailorlm.rundir import RunDir
from tailorlm.safety import check_output_dir, sigterm_as_interrupt
from tailorlm.track import start_tracking, tracked_group
from tailorlm.train import resume


@dataclass
class Opened:
    """The run directory in use, and what ``status.json`` says when the block ends well."""

    run_dir: RunDir
    finished: dict[str, Any] = field(default_factory=dict)


@contextmanager
def single_run(recipe: Recipe, console: Console) -> Iterator[Opened]:
    """One ``tailor run``: resumable from its checkpoints, logged to MLflow as one run (a child inside a group)."""
    tracker = start_tracking(recipe)
    check_output_dir(recipe)
    run_dir = RunDir.create(recipe.output_dir)
    run_dir.resume_from = resume.begin(recipe, run_dir, console)  # before the files below are rewritten
    resumed = {"resumed_from": str(run_dir.resume_from)} if run_dir.resume_from else {}
    _write_start(run_dir, recipe, run_info() | {"data_files": data_files(recipe)})
    run_dir.set_status("running", pid=os.getpid(), resumed_from=resumed.get("resumed_from"))
    opened = Opened(run_dir, resumed)
    try:
        with sigterm_as_interrupt():  # SIGTERM -> status "interrupted", checkpoints kept for --resume
            yield opened
    except BaseException as exc:
        resume.record_failure(run_dir, exc)
        tracker.failed(run_dir.path, exc, console)  # a failed run is logged too, with its error
        raise
    run_dir.set_status("finished", **opened.finished)
    tracker.finished(run_dir.path, console)  # after metrics.json and the report: MLflow gets the final files


@contextmanager
def group_run(recipe: Recipe, console: Console, kind: str, **status: Any) -> Iterator[Opened]:
    """Many runs under one folder (``kind``: seeds, kfold or tune); each inner run has its own single_run."""
    start_tracking(recipe)  # tracking.mlflow: a bad tracking.uri fails before the first inner run trains
    check_output_dir(recipe)
    run_dir = RunDir.create(recipe.output_dir)
    _write_start(run_dir, recipe, run_info())
    opened = Opened(run_dir, dict(status))
    with tracked_group(recipe, run_dir.path, kind, console):  # one MLflow parent, a child per inner run
        run_dir.set_status("running", pid=os.getpid(), **status)  # `tailor runs`: running, or killed (pid gone)
        try:
            with sigterm_as_interrupt():
                yield opened
        except BaseException as exc:
            resume.record_failure(run_dir, exc)
            raise
        run_dir.set_status("finished", **opened.finished)


def _write_start(run_dir: RunDir, recipe: Recipe, info: dict[str, Any]) -> None:
    run_dir.write_text("recipe.resolved.yaml", dump_recipe(recipe))
    run_dir.write_json("run_info.json", info)
