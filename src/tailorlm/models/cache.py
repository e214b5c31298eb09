"""The model cache: shipped models that need a one-time conversion are written here once, then loaded like any
local folder.

``$TAILORLM_CACHE`` when set, else ``~/.cache/tailorlm``. Writes go to a temporary folder that is renamed into
place, so an interrupted conversion never leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def cache_root() -> Path:
    """Where converted models live: ``$TAILORLM_CACHE`` when set, else ``~/.cache/tailorlm``."""
    configured = os.environ.get("TAILORLM_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tailorlm"


def is_cached(folder: Path) -> bool:
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def save_atomically(model: Any, tokenizer: Any, out: Path) -> Path:
    """Save ``model`` (safetensors) and ``tokenizer`` to ``out`` through a temporary folder and a rename."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _share(tmp)
        if out.exists():  # another process finished first: keep its copy
            shutil.rmtree(tmp)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _share(folder: Path) -> None:
    """mkdtemp makes the folder private (0700); a model cache is meant to be read by every user of the machine."""
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o644)
