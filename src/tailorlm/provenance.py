"""What a run was made from, and running it again: data file hashes, determinism, ``tailor run --reproduce``.

``run_info.json`` (next to ``recipe.resolved.yaml``) records library versions, the git revision and, from here,
the sha256 of every data file. ``tailor run --reproduce RUN_DIR`` reads the resolved recipe back, points it at a
new output folder and warns when a data file's content no longer matches its recorded hash: the same recipe
on different data is a different experiment. On CPU the same recipe and seed give the same metrics.json
(timings aside); on GPUs some kernels are non-deterministic, so expect small differences there.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tailorlm import __version__
from tailorlm.errors import UserError
from tailorlm.recipe import Recipe, load_recipe

DATA_KEYS = ("train", "validation", "test")
_CHUNK = 1 << 20


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_info() -> dict[str, Any]:
    """Library versions, machine and code revision: what a reader needs to reproduce the numbers."""
    import torch
    import transformers

    versions = {"tailorlm": __version__, "torch": torch.__version__, "transformers": transformers.__version__}
    for name in ("peft", "datasets", "accelerate", "sklearn"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            continue
    return {
        "versions": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "torch_threads": torch.get_num_threads(),
        "git_revision": _git_revision(),
        "command": " ".join(sys.argv),
        "cwd": os.getcwd(),  # relative paths in the recipe are relative to it (--reproduce from another folder)
    }


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (data files may be larger than memory)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def data_files(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """``{"data.train": {"path", "sha256", "bytes"}, ...}`` for the data files the recipe names and that exist."""
    files: dict[str, dict[str, Any]] = {}
    named = {f"data.{key}": getattr(recipe.data, key) for key in DATA_KEYS}
    for entry in recipe.tasks or []:  # a multi-task recipe: every task's files (resume checks them too)
        named |= {f"tasks.{entry.name}.data.{key}": getattr(entry.data, key) for key in DATA_KEYS}
    a = recipe.adapt
    used = a.pretrain or (a.self_train and not a.unlabelled)  # self-training reads adapt.text when no unlabelled
    named["adapt.text"] = a.text if used else None  # a changed corpus: no resume
    named["adapt.unlabelled"] = a.unlabelled if a.self_train else None
    for key, name in named.items():
        if not name:
            continue
        path = Path(name).expanduser()
        if path.is_file():
            files[key] = {"path": str(path.resolve()), "sha256": sha256_of(path), "bytes": path.stat().st_size}
    return files


def changed_data_files(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Recipe keys of data files whose hash differs from (or is missing in) the recorded one."""
    changed = []
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key) or {}, current.get(key) or {}
        if old.get("sha256") != new.get("sha256"):
            changed.append(key)
    return changed


def make_deterministic(on_gpu: bool) -> None:
    """Deterministic kernels where they cost little: always on CPU; on GPU the defaults stay (speed).

    ``warn_only`` keeps an op without a deterministic kernel from failing the run.
    """
    import torch

    if not on_gpu:
        torch.use_deterministic_algorithms(True, warn_only=True)


# ------------------------------------------------------------------------------------------- --reproduce


#: recipe keys that may name a file or folder relative to the folder `tailor run` was started from
PATH_KEYS = ("data.train", "data.validation", "data.test", "model.name", "training.accelerate_config",
             "adapt.text", "adapt.unlabelled", "adapt.target_unlabeled", "adapt.target_test", "adapt.target_labeled",
             "adapt.target_validation",
             "augment.synonyms")


def reproduce_args(run_dir: Path, overrides: list[str] | None) -> tuple[Path, list[str]]:
    """The recipe file and ``--set`` overrides that rerun ``run_dir``: its resolved recipe, into a new folder.

    The output folder is ``<run_dir>-reproduce`` unless ``--set output_dir=...`` names one; rerunning into the
    original folder would overwrite the run one wants to compare against, so that is refused. Relative paths in
    the recipe are pinned to what the original run read (``run_info.json``: the data files' absolute paths, and
    the folder it ran in), so ``--reproduce`` works from any folder.
    """
    resolved = run_dir / "recipe.resolved.yaml"
    if not resolved.is_file():
        raise UserError(f"{run_dir}: no recipe.resolved.yaml; pass the output_dir of an earlier `tailor run`")
    extra = list(overrides or [])
    chosen = [o.partition("=")[2] for o in extra if o.strip().startswith("output_dir=")]
    target = chosen[-1] if chosen else f"{run_dir.resolve()}-reproduce"
    if Path(target).expanduser().resolve() == run_dir.resolve():
        raise UserError(f"{run_dir}: --reproduce writes to a new folder; set --set output_dir=OTHER")
    pinned = pinned_paths(run_dir, {o.partition("=")[0].strip() for o in extra})
    return resolved, [*pinned, *extra, f"output_dir={target}", "training.resume=never"]


def pinned_paths(run_dir: Path, overridden: set[str]) -> list[str]:
    """``key=/absolute/path`` overrides for the recipe's relative paths, as the original run resolved them."""
    return [f"{key}={json.dumps(path)}" for key, (path, relative) in recorded_paths(run_dir).items()
            if relative and key not in overridden]


def recorded_paths(run_dir: Path) -> dict[str, tuple[str, bool]]:
    """``{recipe key: (absolute path, whether the recipe wrote it relative)}`` for the files and folders a run
    named: the data files' paths from ``run_info.json``, others against the folder it ran in. A path that cannot
    be placed (an older run without ``cwd``) is left out."""
    import yaml

    try:
        raw = yaml.safe_load((run_dir / "recipe.resolved.yaml").read_text(encoding="utf-8")) or {}
        info = json.loads((run_dir / "run_info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return {}  # an older or damaged run: the recipe is read as it is (the drift check says so)
    recorded = info.get("data_files") or {} if isinstance(info, dict) else {}
    cwd = info.get("cwd") if isinstance(info, dict) else None
    found: dict[str, tuple[str, bool]] = {}
    for key in PATH_KEYS:
        section, _, name = key.partition(".")
        value = raw.get(section, {}).get(name) if isinstance(raw.get(section), dict) else None
        if not isinstance(value, str) or not value:
            continue
        relative = not Path(value).expanduser().is_absolute()
        absolute = (recorded.get(key) or {}).get("path")
        if absolute is None and not relative:
            absolute = os.path.normpath(Path(value).expanduser())
        elif absolute is None and cwd and (Path(cwd) / value).exists():
            absolute = os.path.normpath(Path(cwd) / value)
        if absolute is not None:
            found[key] = (str(absolute), relative)
    return found


@contextmanager
def removed_on_failure(folder: Path) -> Iterator[None]:
    """A ``--reproduce`` that fails leaves nothing behind: the folder is removed when this run created it."""
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        raise


def check_reproducible(run_dir: Path, overrides: list[str]) -> list[str]:
    """Warnings for a --reproduce: data files whose content differs from the original run's."""
    recipe = load_recipe(run_dir / "recipe.resolved.yaml", overrides)
    return data_drift_warnings(run_dir, recipe)


def data_drift_warnings(run_dir: Path, recipe: Recipe) -> list[str]:
    """One line per data file whose content differs from what the original run recorded."""
    info_file = run_dir / "run_info.json"
    try:
        stored = json.loads(info_file.read_text(encoding="utf-8")).get("data_files") or {}
    except (OSError, ValueError):
        return [f"{info_file}: unreadable or missing; the data cannot be checked against the original run"]
    if not stored:
        return [f"{info_file}: records no data hashes (older run); the data cannot be checked"]
    current = data_files(recipe)
    return [
        f"{key} ({(current.get(key) or stored.get(key) or {}).get('path')}) differs from the original run's "
        "(sha256 changed or file missing): the numbers may differ"
        for key in changed_data_files(stored, current)
    ]
