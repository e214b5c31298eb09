"""Guards that turn dangerous or doomed runs into one clear line before any harm or wasted hours.

- **Where a run writes.** Every file a run writes lies inside ``output_dir`` (``RunDir``). The folder must not be
  the filesystem root or the home directory, and no data file may lie inside it: a run replaces ``model/``,
  deletes ``checkpoints/`` and rewrites files such as ``metrics.json``, so inputs there could be overwritten.
  Folders a run replaces (``model/``, ``model_merged/``, ``adapted/``) or deletes (``checkpoints/``) are refused
  up front when they hold files tailorlm did not write; ``tailor export --out`` refuses the same way
  (``check_export_dir``), and ``rundir.replace_dir`` checks again before it replaces anything.
- **Code shipped with a model.** A model folder whose config names its own Python classes (``auto_map``) is
  loaded only with ``model.trust_remote_code: true``; without it the run stops before transformers can import
  anything from the folder. Weights are safetensors-only unless ``model.allow_pickle`` (models/registry.py).
- **Disk.** Checkpoints with optimiser state take about three times the model's size each; the free space is
  checked before training and before saving, not discovered when the disk fills up at hour three.
- **Memory.** A CUDA out-of-memory error becomes a message listing the recipe keys that reduce memory.
- **Signals.** SIGTERM (a scheduler stopping the job) is raised as ``KeyboardInterrupt`` so status.json says
  ``interrupted`` and the checkpoints stay for ``tailor run --resume``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tailorlm.errors import ModelError, RecipeError, UserError
from tailorlm.models.registry import TAILOR_META
from tailorlm.recipe import Recipe
from tailorlm.rundir import ADAPT_STATS, check_replaceable

GIB = 1024**3


# ------------------------------------------------------------------------------------------- output_dir


def _refuse_root_or_home(out: Path, shown: str, key: str) -> None:
    if out == Path(out.anchor) or out == Path.home().resolve():
        raise RecipeError(
            f"{key} {shown!r} is {'the filesystem root' if out == Path(out.anchor) else 'your home'} "
            "folder; choose a dedicated folder such as runs/NAME"
        )


#: folders a run replaces or deletes inside output_dir, and the file that marks each as tailorlm's own
_OWNED_FOLDERS = (("model", TAILOR_META), ("model_merged", TAILOR_META), ("adapted", ADAPT_STATS))


def check_output_dir(recipe: Recipe) -> Path:
    """The resolved output folder, refused when writing there could destroy something (module docstring)."""
    out = Path(recipe.output_dir).expanduser().resolve()
    _refuse_root_or_home(out, recipe.output_dir, "output_dir")
    sections = [("data", recipe.data)] + [(f"tasks[{i}].data", e.data) for i, e in enumerate(recipe.tasks or [])]
    for section, key in ((s, k) for s in sections for k in ("train", "validation", "test")):
        name = getattr(section[1], key)
        if not name:
            continue
        data = Path(name).expanduser().resolve()
        if data == out or out in data.parents:
            raise RecipeError(
                f"{section[0]}.{key} ({name}) lies inside output_dir ({recipe.output_dir}); a run rewrites files "
                "there, so keep data and outputs apart: set output_dir to another folder, e.g. runs/NAME"
            )
    _check_owned_folders(out)
    return out


def refuse_finished_run(recipe: Recipe) -> None:
    """``tailor run`` into an ``output_dir`` whose ``status.json`` says finished would replace its results: refused
    unless ``overwrite`` (``tailor run --overwrite``). An interrupted or failed run there is resumed or restarted
    as before (``training.resume``)."""
    if recipe.overwrite:
        return
    status_file = Path(recipe.output_dir).expanduser() / "status.json"
    try:
        status = json.loads(status_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(status, dict) and status.get("status") == "finished":
        raise UserError(
            f"output_dir {recipe.output_dir}: holds a finished run ({status_file}, {status.get('time', '?')}) and "
            "rerunning would overwrite its results; pass --overwrite (or --set overwrite=true) to replace it, or "
            "choose another folder (--set output_dir=runs/NEW); --resume only continues an interrupted run"
        )


def _check_owned_folders(out: Path) -> None:
    """A run replaces model/, model_merged/, adapted/ and deletes checkpoints/: refused now, before any work,
    when one of them holds someone else's files (the run would otherwise delete them after training)."""
    for name, marker in _OWNED_FOLDERS:
        check_replaceable(out / name, marker, f"output_dir/{name}, which a run replaces")
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        foreign = [p.name for p in checkpoints.iterdir() if not p.name.startswith(("checkpoint-", "."))]
        if foreign:
            raise UserError(
                f"{checkpoints}: holds files that are not training checkpoints ({', '.join(sorted(foreign)[:3])}) "
                "and a run deletes this folder; choose another output_dir or move those files away"
            )


def check_export_dir(out: Path, source: Path) -> Path:
    """Where ``tailor export --out`` may write: not /, home, the model being exported or a folder holding it,
    and not a non-empty folder other than an earlier export (``tailor_model.json``), since it gets replaced."""
    resolved = out.expanduser().resolve()
    _refuse_root_or_home(resolved, str(out), "--out")
    src = source.expanduser().resolve()
    if resolved == src or resolved in src.parents:
        raise UserError(f"--out {out}: is or holds the model being exported ({source}); choose another folder, "
                        "e.g. --out merged-model")
    check_replaceable(resolved, TAILOR_META, "--out, which the export replaces")
    return resolved


# ------------------------------------------------------------------------------------------- remote code


def _auto_map(folder: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name in ("config.json", "tokenizer_config.json", "processor_config.json"):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(value, dict) and isinstance(value.get("auto_map"), dict):
            found.update(value["auto_map"])
    return found


_TRUST_FIX = "use a model without custom code, or set model.trust_remote_code=true if you trust its source"


def check_remote_code(folder: Path, source_name: str, trust_remote_code: bool, fix: str = _TRUST_FIX) -> None:
    """Refuse a local model folder that ships its own classes unless the recipe trusts it.

    Checked here rather than left to transformers so that nothing from the folder is imported, whatever the
    installed transformers version decides about models whose ``model_type`` it also knows. ``fix`` is the
    advice for where the folder came from (a saved model has no recipe to trust it in).
    """
    if trust_remote_code or not folder.is_dir():
        return
    auto_map = _auto_map(folder)
    if not auto_map:
        return
    modules = sorted({str(v).split(".")[0] + ".py" for value in auto_map.values()
                      for v in (value if isinstance(value, list) else [value]) if v and "--" not in str(v)})
    shown = ", ".join(modules) or "custom classes"
    raise ModelError(f"{source_name}: the model ships its own code ({shown}, via auto_map) which is not run by "
                     f"default; {fix}")


# ------------------------------------------------------------------------------------------- disk


def model_bytes(model: Any) -> int:
    """Bytes of the model's parameters and buffers as stored (dtype sizes respected)."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return int(params + buffers)


def checkpoint_bytes(model: Any, full: bool) -> int:
    """One checkpoint: weights, plus AdamW's two moments (about 2x the trainable weights) when ``full``."""
    size = model_bytes(model)
    if full:
        trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        size += 2 * trainable
    return size


def check_free_disk(folder: Path, needed: int, what: str) -> None:
    """Fail now, with numbers, when ``folder``'s filesystem has less than ``needed`` bytes free (+10%)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed * 1.1:
        raise UserError(
            f"{folder}: not enough free disk for {what} (needs about {needed / GIB:.2f} GiB, {free / GIB:.2f} GiB "
            "free); free space, choose another output_dir, or lower training.save_total_limit / set "
            "training.resume=never (checkpoints without optimiser state)"
        )


def training_disk_need(model: Any, full_checkpoints: bool, keep: int) -> int:
    """Checkpoints kept at once (``save_total_limit`` + the best one + the one being written) and model/."""
    return checkpoint_bytes(model, full_checkpoints) * (keep + 2) + model_bytes(model)


# ------------------------------------------------------------------------------------------- memory


def is_out_of_memory(exc: BaseException) -> bool:
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or (
        isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)
    )


def out_of_memory_error(recipe: Recipe) -> UserError:
    t = recipe.training
    return UserError(
        f"GPU out of memory with training.batch_size={t.batch_size}; lower it (e.g. --set training.batch_size="
        f"{max(1, t.batch_size // 2)}) with training.gradient_accumulation={t.gradient_accumulation * 2} to keep the "
        "effective batch, set training.gradient_checkpointing=true, lower training.max_length"
        + ("" if t.auto_batch_size else ", or let training.auto_batch_size=true find a batch that fits")
    )


# ------------------------------------------------------------------------------------------- signals


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Inside the block, SIGTERM raises KeyboardInterrupt (so cleanup and status.json run); restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------------- CSV for spreadsheets

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> Any:
    """A cell for a CSV that people open in a spreadsheet: text starting like a formula gets a leading quote.

    (OWASP "CSV injection".) Numbers, including negative ones, stay as they are. tailorlm's own data outputs are
    JSON Lines (rejects.jsonl, predictions.jsonl), which spreadsheets do not evaluate; CSV exports of user text
    should pass each cell through here.
    """
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def csv_unsafe(value: str) -> str:
    """Undo ``csv_safe`` on a cell read back from a CSV tailorlm wrote (the review file comes back filled in)."""
    if value.startswith("'") and value[1:].startswith(_FORMULA_START) and csv_safe(value[1:]) == value:
        return value[1:]
    return value
