"""`tailor tune --storage URL`: processes that share a database share one study (the multi-machine path).

The real test starts a throwaway PostgreSQL cluster from Debian's `postgresql` package (initdb and pg_ctl, a data
folder in a temporary directory, listening on a unix socket only, no TCP port) and runs two `tailor tune`
processes with different output folders against it at the same time, as two machines would. A machine without
the package skips it, saying why; under CI (``CI=true``, set by .ci/run after installing the package) a missing
package fails it. The URL checks need no server.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tailorlm.recipe import load_recipe
from tailorlm.tune.storage import shown_url, storage_url
from tests.helpers import assert_skips_here_and_fails_under_ci, missing_component, run_cli
from tests.test_tune import read_trials, tune_recipe

ENV = os.environ | {"HF_HUB_OFFLINE": "1"}


def _postgres_bin() -> Path | None:
    """The newest installed server's binaries (Debian keeps them off PATH, under /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


def _server_user() -> list[str] | None:
    """How to run the server: as we are, or (PostgreSQL refuses root; CI runs as root) as Debian's postgres user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    return ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else None


def require_postgres() -> tuple[Path, list[str]]:
    """The server's binaries and the command prefix to run them, or a skip on a developer machine without them;
    under CI (``CI=true``) their absence fails, so the test cannot quietly stop running there."""
    binaries, prefix = _postgres_bin(), _server_user()
    if binaries is not None and prefix is not None:
        return binaries, prefix
    message = ("no PostgreSQL server binaries (initdb, pg_ctl): install Debian's postgresql to run the shared-study "
               "test" if binaries is None else "running as root without a 'postgres' user to run PostgreSQL as")
    missing_component(message)


def test_missing_postgres_fails_under_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "_postgres_bin", lambda: None)
    assert_skips_here_and_fails_under_ci(require_postgres, monkeypatch, skip_match="install Debian's postgresql")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh cluster on a unix socket in a short temporary folder (socket paths are limited to ~100 bytes)."""
    binaries, prefix = require_postgres()
    root = Path(tempfile.mkdtemp(prefix="tailor-pg-"))
    if prefix:
        shutil.chown(root, "postgres", "postgres")
    data = root / "data"

    def server(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=False)

    made = server(str(binaries / "initdb"), "-D", str(data), "-U", "tailor", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
    assert made.returncode == 0, made.stderr
    options = f"-k {root} -c listen_addresses='' -F"  # unix socket only; -F: no fsync, a throwaway cluster
    started = server(str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    assert started.returncode == 0, started.stderr + (root / "log").read_text(errors="replace")
    try:
        yield f"postgresql://tailor@/postgres?host={root}"
    finally:
        server(str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def test_two_tune_processes_on_one_postgres_storage_share_one_study(tmp_path: Path, tiny_model_dir: Path,
                                                                     postgres_url: str) -> None:
    """Two `tailor tune` processes, each with its own folder, on the same --storage at the same time (as on two
    machines): one study of exactly the requested trials, numbered once each, split between the two folders."""
    recipes = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        recipes.append(tune_recipe(tmp_path / name, tiny_model_dir))
    args = ["--method", "random", "--trials", "4", "--metric", "loss", "--storage", postgres_url, "--study", "shared"]
    processes = [subprocess.Popen([sys.executable, "-m", "tailorlm", "tune", str(r), *args], env=ENV,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in recipes]
    results = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr
    study = optuna.load_study(study_name="shared", storage=postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(study.trials) == len(finished) == 4  # the requested number in total, not per process
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]
    ran = {name: {int(p.name.split("-")[1]) for p in (tmp_path / name / "tune" / "trials").glob("trial-*")}
           for name in ("a", "b")}
    assert ran["a"] and ran["b"] and not ran["a"] & ran["b"]  # both processes ran trials, none the same one
    assert ran["a"] | ran["b"] == {0, 1, 2, 3}
    assert len({json.dumps(t.params, sort_keys=True) for t in study.trials}) == 4  # processes drew apart
    summaries = [json.loads((tmp_path / name / "tune" / "tune.json").read_text()) for name in ("a", "b")]
    for name, summary in zip(("a", "b"), summaries, strict=True):
        assert summary["storage"].startswith("postgresql+psycopg://tailor@/postgres?host=")
        assert sum(summary["counts"].values()) == 4  # the whole study, as it was when this process ended
        assert len(read_trials(tmp_path / name / "tune")) == 4  # each folder's table shows every trial
    last = [s for s in summaries if s["counts"] == {"complete": 4}]
    assert last and all(s["best"]["number"] == study.best_trial.number for s in last)  # the last to end saw all


def test_postgres_urls_get_the_psycopg_driver_and_a_password_is_masked(tmp_path: Path, tiny_model_dir: Path) -> None:
    for given, used in [("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
                        ("postgres://u@/db?host=/run/pg", "postgresql+psycopg://u@/db?host=/run/pg"),
                        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
                        ("sqlite:////tmp/s.db", "sqlite:////tmp/s.db")]:
        recipe = load_recipe(tune_recipe(tmp_path, tiny_model_dir), [f"search.storage={given}"])
        assert storage_url(recipe, tmp_path) == used
    assert "secret" not in shown_url("postgresql+psycopg://u:secret@h/db")


@pytest.mark.parametrize(("url", "message"), [
    ("mongodb://localhost/db", "key 'search.storage' value error, expected a database url"),
    ("postgresql//user@host/db", "key 'search.storage' value error, expected a database url"),
    ("postgresql://nobody@/nodb?host=/nonexistent-socket-dir", "search.storage: cannot open postgresql+psycopg://"),
])
def test_a_bad_storage_url_is_one_line_naming_the_key(tmp_path: Path, tiny_model_dir: Path, url: str,
                                                      message: str) -> None:
    recipe = tune_recipe(tmp_path, tiny_model_dir)
    code, _, stderr = run_cli(["tune", str(recipe), "--method", "random", "--trials", "1", "--storage", url])
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1 and message in stderr, stderr
    assert "Traceback" not in stderr


# ------------------------------------------------------------------------------------------ shared recovery
# In a shared storage "RUNNING at start" may be another machine's live trial: only this machine's dead processes'
# trials are re-queued at start; the others are left to Optuna's heartbeat, whose callback re-queues them.


def _running_trial(study: optuna.Study, worker: str) -> optuna.trial.Trial:
    trial = study.ask()
    trial.suggest_float("training.learning_rate", 1e-4, 3e-3, log=True)
    trial.set_user_attr("worker", worker)
    return trial


def test_a_shared_study_requeues_only_dead_local_trials_and_heartbeat_stale_ones(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from tailorlm.tune import storage
    from tailorlm.tune.study import open_study, recover_interrupted

    monkeypatch.setattr(storage, "HEARTBEAT_S", 1)
    monkeypatch.setattr(storage, "GRACE_S", 1)
    recipe = load_recipe(tune_recipe(tmp_path, tiny_model_dir), [f"search.storage=sqlite:///{tmp_path / 's.db'}"])
    study = open_study(recipe, tmp_path / "tune", "loss", "minimize", console=Console(quiet=True))
    ended = subprocess.Popen(["true"])
    ended.wait()  # a process of this machine that has gone
    dead = _running_trial(study, f"{socket.gethostname()}:{ended.pid}")
    alive = _running_trial(study, f"{socket.gethostname()}:{os.getppid()}")
    elsewhere = _running_trial(study, "another-machine:4242")
    assert recover_interrupted(study, Console(quiet=True), shared=True) == 1
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert states[alive.number] == states[elsewhere.number] == optuna.trial.TrialState.RUNNING
    study._storage.record_heartbeat(elsewhere._trial_id)  # its process beat once, then died with its machine
    time.sleep(2.5)  # past the grace period
    optuna.storages.fail_stale_trials(study)  # what study.optimize runs before each trial of a shared study
    trials = study.get_trials(deepcopy=False)
    assert trials[elsewhere.number].state == optuna.trial.TrialState.FAIL
    waiting = [t for t in trials if t.state == optuna.trial.TrialState.WAITING]
    assert sorted(t.user_attrs["retry_of"] for t in waiting) == [dead.number, elsewhere.number]  # queued once each
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING  # no heartbeat record: left alone
