"""The run directory: everything needed to read, trust and reproduce a run, written atomically.

Files are written to a temporary name in the same folder and renamed, so a crash never leaves a half-written
file that looks complete. ``status.json`` says whether the run is running, finished or failed (and why).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from tailorlm.errors import UserError


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are meant to be shared like any file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=_json_default) + "\n")


#: written last into adapted/ (adapt/pretrain.py): a folder holding it is complete, and tailorlm's
ADAPT_STATS = "adapt.json"


def check_replaceable(folder: Path, marker: str, what: str) -> None:
    """Refuse to replace ``folder`` unless it is missing, empty, or one tailorlm wrote (it holds ``marker``).

    Replacing means deleting: a folder without the marker holds someone else's files, which no command may
    delete, so the user is told to pick another place instead.
    """
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"{folder}: is a file, not a folder ({what}); choose a new or empty folder")
    if any(folder.iterdir()) and not (folder / marker).is_file():
        raise UserError(
            f"{folder}: holds files tailorlm did not write (no {marker}) and would be replaced ({what}); "
            "choose a new or empty folder, or move those files away"
        )


def replace_dir(tmp: Path, final: Path, marker: str) -> None:
    """Move a fully written folder into place, replacing an older one that tailorlm wrote (it holds ``marker``).

    A non-empty ``final`` without ``marker`` is refused (``check_replaceable``) and the temporary folder,
    which this process made, is removed: nothing of the user's is ever deleted.
    """
    if final.exists():
        try:
            check_replaceable(final, marker, "an output folder")
        except UserError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


class RunDir:
    """Paths of one run's outputs, and the writes into it."""

    #: the checkpoint an interrupted run continues from (set by run.py via train/resume.py); None: from scratch
    resume_from: Path | None = None

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path) -> RunDir:
        run = cls(path)
        if run.path.exists() and not run.path.is_dir():
            raise UserError(f"{run.path}: output_dir is a file; choose a folder with --set output_dir=runs/NAME")
        try:
            run.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{run.path}: cannot create output_dir ({exc.strerror}); choose a writable folder"
            ) from None
        return run

    # well-known files ---------------------------------------------------------------------------
    @property
    def recipe(self) -> Path:
        return self.path / "recipe.resolved.yaml"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def data_report(self) -> Path:
        return self.path / "data_report.json"

    @property
    def rejects(self) -> Path:
        return self.path / "rejects.jsonl"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def log_history(self) -> Path:
        return self.path / "log_history.json"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    # writes ------------------------------------------------------------------------------------
    def write_json(self, name: str, payload: Any) -> Path:
        target = self.path / name
        atomic_write_json(target, payload)
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        atomic_write_text(target, text)
        return target

    def set_status(self, status: str, **extra: Any) -> None:
        payload = {"status": status, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")} | extra
        atomic_write_json(self.status_file, payload)


def process_alive(pid: Any) -> bool:
    """Whether a process with this id (not this one) runs on this machine: the writer of a run or study folder."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
