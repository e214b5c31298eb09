"""Model resolution (aliases, local folders, hub ids), safe loading and LoRA.

The names below load on first use, so ``tailorlm.models.registry`` (the CLI's checks before a run) does not
import torch through ``models.peft``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "apply_lora": "peft", "choose_targets": "peft", "count_parameters": "peft",
    "ALIASES": "registry", "ResolvedModel": "registry", "check_local_model": "registry",
    "read_model_meta": "registry", "resolve_model": "registry", "write_model_meta": "registry",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"tailorlm.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'tailorlm.models' has no attribute {name!r}")
