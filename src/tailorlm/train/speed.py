"""The speed settings of a run: recipe keys → TrainingArguments, with defaults that are right for the device.

Each default is the fastest choice that cannot change the result beyond float noise on the machine it runs on
(measured per setting in benchmarks/RESULTS.md):

- ``optimizer: auto`` → torch's fused AdamW (one kernel for all parameters) where the installed torch has it;
- ``torch_compile: auto`` → on for CUDA GPUs, off on CPU, where compiling each new batch shape costs more than a
  short fine-tune gains;
- TF32 matmuls on Ampere-or-newer GPUs (fp32 weights, 10-bit mantissa inputs: the PyTorch default for conv);
- pinned host memory for the data loader on GPUs, persistent workers when ``num_workers > 0``;
- ``gradient_checkpointing`` is off unless asked: it trades ~30% more compute for activation memory;
- ``auto_batch_size`` retries training after an out-of-memory error at 0.9× the per-device batch, as often as
  needed (Trainer's ``auto_find_batch_size``, accelerate's ``find_executable_batch_size``; it recognises CUDA, XPU,
  MPS and CPU-allocator errors, so it is not limited to GPUs); gradient accumulation stays, so the global batch
  shrinks too and it is off unless asked. The batch trained at is in metrics.json (``train.batch_size``).
"""

from __future__ import annotations

from typing import Any

import torch

from tailorlm.recipe import TrainingConfig


def fused_adamw_available() -> bool:
    """torch ≥ 2.4 has a fused AdamW for CPU and CUDA; older ones only for CUDA."""
    major, minor = (int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    return (major, minor) >= (2, 4) or torch.cuda.is_available()


def optimizer_name(setting: str) -> str:
    if setting == "adamw_fused" or (setting == "auto" and fused_adamw_available()):
        return "adamw_torch_fused"
    return "adamw_torch"


def compile_enabled(setting: str) -> bool:
    return setting == "on" or (setting == "auto" and torch.cuda.is_available())


def tf32_supported() -> bool:
    """TF32 tensor cores exist from Ampere (compute capability 8.0) on."""
    return torch.cuda.is_available() and torch.cuda.get_device_capability(0)[0] >= 8


def speed_arguments(t: TrainingConfig, token_weighted_loss: bool = False) -> dict[str, Any]:
    """The TrainingArguments that set speed, memory and data-parallel behaviour, from the recipe's training section.

    ``token_weighted_loss``: the model's loss divides by the batch's label count that Trainer passes it (causal
    LMs). Only then may Trainer average tokens across processes: it multiplies the loss by the process count, and
    a model that ignores the count (BERT's classifiers average per example) would get N times the loss and the
    gradient under DDP.
    """
    cuda = torch.cuda.is_available()
    return {
        "average_tokens_across_devices": token_weighted_loss,
        "optim": optimizer_name(t.optimizer),
        "torch_compile": compile_enabled(t.torch_compile),
        **checkpointing_arguments(t.gradient_checkpointing),
        "auto_find_batch_size": t.auto_batch_size,
        "tf32": True if tf32_supported() else None,
        "dataloader_num_workers": t.num_workers,
        "dataloader_pin_memory": cuda,
        "dataloader_persistent_workers": t.num_workers > 0,
    }


def checkpointing_name() -> str:
    """TrainingArguments' name for activation (gradient) checkpointing: transformers 5.x renamed
    ``gradient_checkpointing`` to ``activation_checkpointing`` and warns on every run that passes the old name, even
    as False; an earlier 5.x has only the old one."""
    import dataclasses

    from transformers import TrainingArguments

    names = {field.name for field in dataclasses.fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def checkpointing_arguments(on: bool) -> dict[str, Any]:
    """The checkpointing keys under the installed transformers' name. Non-reentrant checkpointing also works when
    the inputs need no grad (frozen embeddings under LoRA)."""
    name = checkpointing_name()
    return {name: on, f"{name}_kwargs": {"use_reentrant": False} if on else None}
