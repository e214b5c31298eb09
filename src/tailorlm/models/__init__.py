"""Model resolution (aliases, local folders, hub ids), safe loading and LoRA."""

from tailorlm.models.peft import apply_lora, choose_targets, count_parameters
from tailorlm.models.registry import (
    ALIASES,
    ResolvedModel,
    check_local_model,
    read_model_meta,
    resolve_model,
    write_model_meta,
)

__all__ = [
    "ALIASES",
    "ResolvedModel",
    "apply_lora",
    "check_local_model",
    "choose_targets",
    "count_parameters",
    "read_model_meta",
    "resolve_model",
    "write_model_meta",
]
