"""The dashboard's launcher: a pasted recipe checked exactly as ``tailor run`` checks it, then run as a job.

Why a subprocess: a run imports torch, takes minutes and must survive the page being closed; ``tailor run`` in its
own process writes its run directory, status.json and log as it always does, and the dashboard only reads them.

- validation: ``recipe.load_recipe`` with the ``--set`` lines (unknown keys get its did-you-mean), then
  ``precheck.check_inputs`` (data files, model) and ``safety.refuse_finished_run``: the checks ``tailor run``
  makes before any work, so an error shows in the page and no job starts;
- a job: ``python -m tailorlm run RECIPE --set ...`` in the dashboard's working folder (relative paths in a recipe
  mean what they mean on the command line), its own session (Ctrl+C on the dashboard does not stop it), its recipe
  and its console output in ``FOLDER/.dashboard/jobs/<id>/``, a folder the dashboard creates and nothing else;
- stop: SIGTERM, which ``tailor run`` turns into an interrupt (lifecycle.single_run, safety.sigterm_as_interrupt):
  status.json says "interrupted" and, once a checkpoint exists, resumable, so **Resume** (``tailor run RECIPE
  --resume``, the same recipe and overrides) continues from it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tailorlm.dashboard.index import read_json, resolve_status
from tailorlm.errors import UserError

#: the folder under the indexed one where the dashboard keeps the recipes and logs of the jobs it starts
WORK_FOLDER = ".dashboard"
LOG_TAIL_CHARS = 4000


def set_lines(text: str) -> list[str]:
    """The ``--set`` overrides typed one per line (``--set``/``-s`` prefixes and ``#`` comments allowed)."""
    lines = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = re.sub(r"^(--set|-s)(\s+|=)", "", line).strip()
        if "=" not in line:
            raise UserError(f"--set line {line!r}: write KEY=VALUE, e.g. training.epochs=2")
        lines.append(line)
    return lines


def recipe_name(name: str | None) -> str:
    """A safe file name for the uploaded recipe (errors name it as the user knows it)."""
    base = Path(name or "").name.strip() or "recipe.yaml"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base)
    return base if base.endswith((".yaml", ".yml")) else f"{base}.yaml"


def check_recipe_file(path: Path, overrides: list[str]) -> Any:
    """What ``tailor run`` checks before any work: schema and keys, data files and model, a finished output_dir."""
    from tailorlm.precheck import check_inputs
    from tailorlm.recipe import load_recipe
    from tailorlm.safety import check_output_dir, refuse_finished_run

    recipe = load_recipe(path, overrides)
    check_inputs(recipe)
    refuse_finished_run(recipe)
    check_output_dir(recipe)
    return recipe


def validate(text: str, sets: str, name: str | None = None) -> tuple[Any, list[str], str]:
    """(recipe, overrides, file name) of a pasted recipe, or a UserError whose message names the file as uploaded."""
    shown = recipe_name(name)
    overrides = set_lines(sets)
    if not (text or "").strip():
        raise UserError(f"{shown}: the recipe is empty; paste a recipe YAML or upload a file")
    with tempfile.TemporaryDirectory(prefix="tailor-dashboard-") as folder:
        path = Path(folder) / shown
        path.write_text(text, encoding="utf-8")
        try:
            recipe = check_recipe_file(path, overrides)
        except UserError as exc:
            raise UserError(str(exc).replace(str(path), shown)) from None
    return recipe, overrides, shown


@dataclass
class Job:
    """One ``tailor run`` the dashboard started."""

    id: str
    process: subprocess.Popen[bytes]
    recipe: Path
    overrides: list[str]
    output_dir: Path
    log: Path
    started: float = field(default_factory=time.time)
    stop_requested: bool = False
    resumed_from: str | None = None

    def state(self) -> str:
        code = self.process.poll()  # also reaps the finished child, so its pid stops looking alive
        if code is None:
            return "stopping" if self.stop_requested else "running"
        if self.stop_requested:
            return "stopped"
        return "finished" if code == 0 else "failed"

    def as_dict(self, root: Path) -> dict[str, Any]:
        status = read_json(self.output_dir / "status.json")
        run_state, detail, resumable = resolve_status(status, (self.output_dir / "metrics.json").is_file())
        try:
            rel = self.output_dir.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = None
        return {"id": self.id, "pid": self.process.pid, "state": self.state(), "returncode": self.process.poll(),
                "recipe": self.recipe.name, "overrides": self.overrides, "output_dir": str(self.output_dir),
                "run": rel, "run_status": run_state if status else None, "run_detail": detail,
                "resumable": resumable, "resumed_from": self.resumed_from, "log_tail": log_tail(self.log)}


def log_tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - LOG_TAIL_CHARS))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


class Jobs:
    """The jobs of one dashboard: start, list, stop, resume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cwd = Path.cwd()  # where validate() read the recipe's relative paths
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()

    def _busy(self, output_dir: Path) -> Job | None:
        return next((j for j in self.jobs.values() if j.output_dir.resolve() == output_dir.resolve()
                     and j.process.poll() is None), None)

    def start(self, text: str, sets: str, name: str | None = None) -> Job:
        """Validate, then start ``tailor run`` on the recipe; a UserError (nothing started) when it is not valid."""
        recipe, overrides, shown = validate(text, sets, name)
        output_dir = Path(recipe.output_dir).expanduser()
        output_dir = output_dir if output_dir.is_absolute() else self.cwd / output_dir
        with self.lock:
            busy = self._busy(output_dir)
            if busy is not None:
                raise UserError(f"output_dir {recipe.output_dir}: job {busy.id} is already running there; stop it "
                                "or set another output_dir (--set output_dir=runs/NEW)")
            job_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{len(self.jobs) + 1}"
            folder = self.root / WORK_FOLDER / "jobs" / job_id
            folder.mkdir(parents=True, exist_ok=False)
            path = folder / shown
            path.write_text(text, encoding="utf-8")
            job = self._spawn(job_id, path, overrides, output_dir)
            self.jobs[job_id] = job
        return job

    def _spawn(self, job_id: str, recipe: Path, overrides: list[str], output_dir: Path,
               extra: tuple[str, ...] = ()) -> Job:
        log = recipe.parent / ("resume.log" if extra else "run.log")
        command = [sys.executable, "-m", "tailorlm", "run", str(recipe), *extra]
        for item in overrides:
            command += ["--set", item]
        env = os.environ | {"PYTHONUNBUFFERED": "1"}
        with log.open("ab") as handle:
            process = subprocess.Popen(command, cwd=self.cwd, stdout=handle, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        return Job(job_id, process, recipe, overrides, output_dir, log)

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise UserError(f"no job {job_id} in this dashboard (jobs started by another dashboard are not listed)")
        return job

    def stop(self, job_id: str) -> Job:
        """SIGTERM: ``tailor run`` records "interrupted" and keeps its checkpoints for ``--resume``."""
        job = self.get(job_id)
        if job.process.poll() is None:
            job.stop_requested = True
            job.process.send_signal(signal.SIGTERM)
        return job

    def resume(self, job_id: str) -> Job:
        """``tailor run RECIPE --resume`` with the same recipe and overrides, as a new job."""
        old = self.get(job_id)
        with self.lock:
            if self._busy(old.output_dir) is not None:
                raise UserError(f"job {job_id}: its output_dir is still being written; wait until it has stopped")
            new_id = f"{old.id}-resume-{sum(1 for j in self.jobs.values() if j.resumed_from == old.id) + 1}"
            job = self._spawn(new_id, old.recipe, old.overrides, old.output_dir, ("--resume",))
            job.resumed_from = old.id
            self.jobs[new_id] = job
        return job

    def listing(self) -> list[dict[str, Any]]:
        return [job.as_dict(self.root) for job in sorted(self.jobs.values(), key=lambda j: j.started,
                                                          reverse=True)]

    def stop_all(self, wait_s: float = 20.0) -> None:
        """Stop every running job and wait for them (tests; a dashboard left with Ctrl+C leaves its jobs running)."""
        for job in self.jobs.values():
            if job.process.poll() is None:
                job.stop_requested = True
                job.process.send_signal(signal.SIGTERM)
        for job in self.jobs.values():
            try:
                job.process.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                job.process.kill()
                job.process.wait()
