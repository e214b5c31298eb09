"""Where a study lives: the folder's SQLite file by default, or a database that several processes share.

Optuna's RDBStorage is the one mechanism for both. Several `tailor tune` processes (``--workers N`` on one
machine, or one process per machine with ``--storage postgresql://...``) share a study only through it, so this
module opens it with the settings Optuna documents for several writers:

- SQLite: a ``timeout`` on every connection (a writer waits for the lock instead of failing with "database is
  locked"), and WAL journaling when several local workers write (readers no longer block the writer);
- PostgreSQL: ``postgresql://`` (what users copy from their server's docs) is rewritten to SQLAlchemy's psycopg 3
  dialect, ``postgresql+psycopg://``, the driver the ``postgres`` extra installs; ``pool_pre_ping`` drops
  connections a server closed while a trial trained;
- a shared storage turns on Optuna's trial heartbeat: a trial whose process died on another machine (no heartbeat
  for ``GRACE_S``) is failed by the next process that starts a trial, and ``on_stale`` re-queues its values.
- local processes of one study take trials under one machine-wide lock (``SlotGate``), so two that finish at the
  same instant cannot both start the last trial.

Every way of not reaching the database is one line naming ``search.storage`` and the fix, never a traceback.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO

import optuna
from optuna.trial import FrozenTrial

from tailorlm.errors import RecipeError
from tailorlm.recipe import Recipe

#: the folder's own study file (the default storage)
STUDY_FILE = "study.db"
#: seconds a SQLite writer waits for another's lock before failing
SQLITE_TIMEOUT_S = 120
#: heartbeat of a running trial in a shared storage, and the silence after which it counts as dead
HEARTBEAT_S = 30
GRACE_S = 120
#: tries at opening a database whose tables another process may be creating at the same moment
CREATE_ATTEMPTS = 5
#: SQLAlchemy dialect prefixes rewritten to the driver tailorlm installs (``pip install 'tailorlm[postgres]'``)
DIALECTS = {"postgresql://": "postgresql+psycopg://", "postgres://": "postgresql+psycopg://"}


def folder_url(out: Path) -> str:
    return f"sqlite:///{(out / STUDY_FILE).resolve()}"


def storage_url(recipe: Recipe, out: Path) -> str:
    """The SQLAlchemy URL of the study: ``search.storage`` with the psycopg dialect, or the folder's file."""
    url = recipe.search.storage
    if url is None:
        return folder_url(out)
    for prefix, dialect in DIALECTS.items():
        if url.startswith(prefix):
            return dialect + url[len(prefix):]
    return url


def is_shared(recipe: Recipe) -> bool:
    """Whether processes other than this tune's own workers may write the study (``search.storage`` is set)."""
    return recipe.search.storage is not None


def shown_url(url: str) -> str:
    """The URL as tune.json and messages show it: a password in it is masked."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _sqlite_path(url: str) -> Path | None:
    return Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") and len(url) > len("sqlite:///") else None


def use_wal(url: str) -> None:
    """SQLite written by several local workers: WAL journaling (kept by the file), so reads do not block writes."""
    path = _sqlite_path(url)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as connection:  # closes, not commits
        connection.execute("PRAGMA journal_mode=WAL")


def make_storage(url: str, *, shared: bool,
                 on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> optuna.storages.RDBStorage:
    """Open (and create the tables of) the study's database; any failure is one RecipeError on search.storage."""
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs: dict[str, object] = (
        {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    )
    heartbeat = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S,
                 "heartbeat_stale_trial_callback": on_stale} if shared else {}
    try:
        return _rdb_storage(url, engine_kwargs, heartbeat)
    except ImportError as exc:
        raise RecipeError(f"search.storage: {shown_url(url)} needs a database driver that is not installed "
                          f"({_first_line(exc)})", fix="pip install 'tailorlm[postgres]' for PostgreSQL") from None
    except (SQLAlchemyError, ValueError, OSError) as exc:
        raise RecipeError(f"search.storage: cannot open {shown_url(url)}: {_first_line(exc)}",
                          fix="check the URL (postgresql://user@host/db, postgresql://user@/db?host=/socket/dir) "
                          "and that the database server runs and accepts this user") from None


def _rdb_storage(url: str, engine_kwargs: dict[str, object],
                 heartbeat: dict[str, object]) -> optuna.storages.RDBStorage:
    """RDBStorage, tried again when its tables were being created by another process at the same moment."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat arguments
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)  # type: ignore[arg-type]
        except (IntegrityError, ProgrammingError):
            # processes started together on an empty database race to create Optuna's tables (PostgreSQL:
            # 'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'); the loser waits and
            # finds them made
            attempt += 1
            if attempt >= CREATE_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)


def _first_line(exc: BaseException) -> str:
    """A database error's first line: SQLAlchemy appends the SQL and a link on the lines after it."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def slot_lock_path(url: str, study: str) -> Path:
    """The machine-wide lock file of one study (by storage URL and name), for every local process that runs it."""
    key = hashlib.sha1(f"{url}\0{study}".encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"tailorlm-tune-{key}.lock"


class SlotGate:
    """An exclusive lock (``flock``) held from "is a trial slot free?" until Optuna has created that trial.

    Without it two local processes that finish at the same instant both see one free slot and both start a
    trial. ``path`` None: a no-op (a process alone on its study). ``release`` may be called more than once.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        if self.path is None or self._handle is not None:
            return
        try:
            handle = self.path.open("a", encoding="utf-8")
        except OSError:  # another user's lock file in a shared /tmp: go on unlocked rather than not at all
            self.path = None
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        self._handle = handle

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()
