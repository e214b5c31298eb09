"""Tokenised splits kept on disk, so the second run on the same data and tokenizer skips tokenisation.

A tuning study, a ``--seeds 5`` run or a user changing the learning rate re-runs the pipeline on identical rows:
tokenising them again (and, for QA, cutting every context into stride windows) is wasted work. The encoded
train and validation splits are saved with ``datasets``' Arrow format (``save_to_disk``, memory-mapped on load)
under ``<cache>/tokenized/<key>``, where the key hashes everything tokenisation depends on:

- the cleaned rows of every split (their content, not the file names: a copied file still hits);
- the tokenizer (``datasets``' own fingerprint of it: vocabulary, special tokens, chat template, settings);
- the recipe, less what cannot change tokens (training hyper-parameters other than ``max_length``, search,
  report, baselines, the output folder);
- tailorlm's version and encoding format version (bumped when a task's ``encode`` changes what it produces).

A miss is always safe (it tokenises); a wrong hit is what the key prevents. Writes go through a temporary folder
and a rename, so ranks of a data-parallel run, or an interrupted run, never leave half an entry. The newest
``MAX_ENTRIES`` entries are kept. ``data.cache_tokenized: false`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from tailorlm.models.cache import TOKENIZED_FOLDER, cache_root

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from tailorlm.data.pipeline import PreparedData
    from tailorlm.recipe import Recipe
    from tailorlm.tasks.base import EncodedSplits, Task

#: bump when a task's ``encode`` output changes for the same input, so old entries stop matching
ENCODING_VERSION = 1
MAX_ENTRIES = 32
_SPLITS = ("train", "validation", "test")
#: training keys that decide tokens; every other training key (learning rate, seed, ...) leaves them unchanged
_TRAINING_KEYS_THAT_TOKENIZE = ("max_length",)
_RECIPE_SECTIONS_WITHOUT_TOKENS = ("output_dir", "search", "report", "baseline", "validation", "fairness",
                                   "tracking")
_DATA_KEYS_WITHOUT_TOKENS = ("train", "validation", "test", "cache_tokenized")


def tokenized_root() -> Path:
    """``$TAILORLM_TOKENIZED_CACHE`` when set (the tests use a fresh one), else ``<model cache>/tokenized``."""
    configured = os.environ.get("TAILORLM_TOKENIZED_CACHE")
    return Path(configured).expanduser() if configured else cache_root() / TOKENIZED_FOLDER


def encode_with_cache(task: Task, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase,
                      ) -> tuple[EncodedSplits, str]:
    """The task's encoded splits and where they came from: ``"hit"``, ``"miss"`` or ``"off"``.

    ``task.after_encode`` runs in every case: it applies what encoding decided beyond the tensors (a decoder's
    target length, QA's effective stride), so a cached encoding leaves ``data`` exactly as a fresh one would.
    """
    if not recipe.data.cache_tokenized:
        encoded = task.encode(recipe, data, tokenizer)
        task.after_encode(recipe, data, tokenizer, encoded)
        return encoded, "off"
    folder = tokenized_root() / cache_key(task.name, recipe, data, tokenizer)
    encoded = load_entry(folder)
    status = "hit"
    if encoded is None:
        status = "miss"
        encoded = task.encode(recipe, data, tokenizer)
        store_entry(encoded, folder)
    task.after_encode(recipe, data, tokenizer, encoded)
    return encoded, status


# ---------------------------------------------------------------------------------------------- the key


def cache_key(task_name: str, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> str:
    """A hex digest of everything the encoded splits depend on (see the module docstring)."""
    from datasets.fingerprint import Hasher

    from tailorlm import __version__

    digest = hashlib.sha256()
    parts = {
        "version": [__version__, ENCODING_VERSION],
        "task": task_name,
        "tokenizer": Hasher.hash(tokenizer),
        "recipe": recipe_part(recipe),
        "data": data_attributes(data),
    }
    digest.update(json.dumps(parts, sort_keys=True, default=str).encode("utf-8"))
    for split in _SPLITS:
        frame = getattr(data, split, None)
        digest.update(f"|{split}|".encode())
        if isinstance(frame, pd.DataFrame):
            digest.update(frame_digest(frame).encode("ascii"))
    return digest.hexdigest()[:32]


def recipe_part(recipe: Recipe) -> dict[str, Any]:
    """The recipe less what cannot change a token."""
    dumped = recipe.model_dump(mode="json")
    for section in _RECIPE_SECTIONS_WITHOUT_TOKENS:
        dumped.pop(section, None)
    dumped["training"] = {k: dumped["training"][k] for k in _TRAINING_KEYS_THAT_TOKENIZE}
    for key in _DATA_KEYS_WITHOUT_TOKENS:
        dumped["data"].pop(key, None)
    return dumped


def data_attributes(data: PreparedData) -> dict[str, Any]:
    """What a task's prepared data carries besides its frames: labels, and the optional fields its task set (QA
    settings, translation meta); unset ones (None) are left out, so each task's key holds only its own."""
    skip = {*_SPLITS, "rejects", "report"}
    fields = getattr(data, "__dataclass_fields__", {})
    values = {name: getattr(data, name) for name in fields if name not in skip and getattr(data, name) is not None}
    if hasattr(data, "labels"):
        values["labels"] = list(data.labels)
    return values


def frame_digest(frame: pd.DataFrame) -> str:
    """Content hash of a frame: pandas' vectorised row hashes, or its JSON when a cell holds a list or dict."""
    digest = hashlib.sha256(json.dumps([list(map(str, frame.columns)), list(map(str, frame.dtypes))]).encode())
    try:
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    except TypeError:  # unhashable cells: token lists, QA answers, chat messages
        digest.update(frame.to_json(orient="split", default_handler=str).encode("utf-8"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- storage


def load_entry(folder: Path) -> EncodedSplits | None:
    """The cached splits in ``folder``, or None when absent or unreadable (then the caller tokenises)."""
    from datasets import load_from_disk

    from tailorlm.tasks.base import EncodedSplits

    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        train = load_from_disk(str(folder / "train"))
        validation = load_from_disk(str(folder / "validation")) if meta["has_validation"] else None
    except (OSError, ValueError, KeyError, FileNotFoundError):
        return None
    _touch(folder)
    return EncodedSplits(train=train, validation=validation, max_length=int(meta["max_length"]),
                         stats=meta.get("stats", {}))


def store_entry(encoded: EncodedSplits, folder: Path) -> bool:
    """Save ``encoded`` to ``folder`` atomically; False (and nothing written) when the disk refuses.

    A cache that cannot be written must not fail a training run: the run goes on with the splits in memory.
    """
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    except OSError:
        return False
    try:
        with _no_progress_bars():
            encoded.train.save_to_disk(str(tmp / "train"))
            if encoded.validation is not None:
                encoded.validation.save_to_disk(str(tmp / "validation"))
        meta = {"max_length": encoded.max_length, "stats": encoded.stats,
                "has_validation": encoded.validation is not None, "created": time.time()}
        (tmp / "meta.json").write_text(json.dumps(meta, default=str), encoding="utf-8")
        if folder.exists():  # another rank or run wrote it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    prune(folder.parent)
    return True


def prune(root: Path, keep: int = MAX_ENTRIES) -> None:
    """Delete all but the ``keep`` most recently used entries (used = written or loaded)."""
    entries = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    entries.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in entries[keep:]:
        shutil.rmtree(stale, ignore_errors=True)


def _touch(folder: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(folder)


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Saving is an implementation detail of a run: no "Saving the dataset" bars in the user's terminal."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
