"""Fitting the training batch into the machine's memory before training starts.

A default causal-LM run (smollm2 + LoRA, batch 32, ~500-token rows) needs far more than a 24 GiB laptop has, and
the kernel's out-of-memory killer ends it with SIGKILL: no message, no status, nothing to resume. So before
``trainer.train`` the memory estimate of :mod:`tailorlm.models.estimate` (weights, gradients, AdamW states,
activations and, for a causal LM, the full-vocabulary logits) is checked against what the machine has free
(:func:`available_memory`: free GPU memory, or available RAM within the cgroup limit), and the per-device batch
becomes the largest divisor of ``training.batch_size`` that fits. Gradient accumulation makes up the difference,
so the effective batch, and with it the learning-rate schedule, stays what the recipe says. When even one example
does not fit, the run stops with a one-line :class:`~tailorlm.errors.UserError` saying what to change.

Only :data:`HEADROOM` of the free memory is planned for: the estimate covers the dominant terms, not allocator
fragmentation, temporaries, the data loader or other processes. ``training.memory_limit`` overrides the figure
(``8GiB``), or turns the check off (``off``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tailorlm.errors import UserError
from tailorlm.models.estimate import GIB, Shape, activation_bytes, config_shape

#: the share of the free memory a plan may use (module docstring)
HEADROOM = 0.8
#: fp32 copies of one forward's logits at inference (the logits and the log-softmax of the loss)
INFERENCE_LOGIT_COPIES = 2


@dataclass(frozen=True)
class ModelSize:
    """What the memory estimate needs from a model: its parameters, the trainable ones, its shape."""

    parameters: int
    trainable: int
    shape: Shape
    causal_lm: bool


@dataclass(frozen=True)
class BatchFit:
    """The per-device batch to train with, the accumulation factor that keeps the effective batch, and why."""

    micro_batch: int
    accumulation: int
    eval_batch: int
    need_bytes: float
    budget_bytes: float | None
    reason: str

    @property
    def reduced(self) -> bool:
        return self.accumulation > 1

    def record(self) -> dict[str, Any]:
        """What metrics.json keeps under ``train``: the decision, which the same recipe on the same data repeats."""
        return {"micro_batch": self.micro_batch, "memory_accumulation": self.accumulation,
                "eval_micro_batch": self.eval_batch, "memory_need_gib": round(self.need_bytes / GIB, 2)}

    def machine(self) -> dict[str, Any]:
        """What metrics.json keeps under ``memory``: the free memory seen this time (it changes run to run, like a
        timing), and the sentence that weighed the need against it."""
        return {"budget_gib": None if self.budget_bytes is None else round(self.budget_bytes / GIB, 2),
                "fit": self.reason}


# ------------------------------------------------------------------------------------------- sizes


def model_size(model: nn.Module, causal_lm: bool) -> ModelSize:
    """The size of a built (possibly LoRA-wrapped) model; tied weights count once, as ``parameters()`` yields."""
    parameters = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSize(parameters, trainable, config_shape(model.config), causal_lm)


def config_size(config: Any, auto_class: Any, peft: Any, causal_lm: bool) -> ModelSize:
    """The size of a model from its config alone (meta device, no weights read): for planning before loading."""
    from tailorlm.errors import ModelError
    from tailorlm.models.estimate import HEAD_NAMES, lora_trainable, meta_model
    from tailorlm.models.peft import choose_targets

    model = meta_model(auto_class, config)
    parameters = sum(p.numel() for p in model.parameters())
    trainable = parameters
    if getattr(peft, "method", "none") == "lora":
        try:
            targets = choose_targets(model, peft)
        except ModelError:
            targets = []
        trainable = lora_trainable(model, targets, peft.r, HEAD_NAMES)
    return ModelSize(parameters, trainable, config_shape(config), causal_lm)


def training_bytes(size: ModelSize, batch: int, seq: int, bytes_per_value: int = 4,
                   checkpointing: bool = False) -> float:
    """Weights (fp32), gradients and AdamW states of the trainable part, activations and logits of one step."""
    fixed = size.parameters * 4 + size.trainable * (4 + 8)
    return fixed + activation_bytes(size.shape, batch, seq, bytes_per_value, checkpointing, size.causal_lm)


def inference_bytes(size: ModelSize, batch: int, seq: int, bytes_per_value: int = 4) -> float:
    """An evaluation forward without gradients: the weights, one layer's activations and the logits."""
    one_layer = activation_bytes(Shape(1, size.shape.hidden, size.shape.heads, size.shape.vocab,
                                       size.shape.max_positions), batch, seq, bytes_per_value, False, False)
    logits = INFERENCE_LOGIT_COPIES * batch * seq * size.shape.vocab * 4 if size.causal_lm else 0
    return size.parameters * 4 + one_layer + logits


# ------------------------------------------------------------------------------------------- the machine


def _cgroup_room() -> int | None:
    """Bytes the cgroup (container) still allows, when it sets a limit: psutil sees the host, not the container."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            return max(0, int(limit) - usage)
    return None


def available_memory(on_gpu: bool) -> tuple[int, str]:
    """(bytes free for training, where the figure comes from): free GPU memory, else available RAM."""
    if on_gpu:
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free), "free GPU memory"
    import psutil

    available = int(psutil.virtual_memory().available)
    room = _cgroup_room()
    if room is not None and room < available:
        return room, "memory left under the container's limit"
    return available, "available RAM"


# ------------------------------------------------------------------------------------------- the fit


def _divisors_descending(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def fit_micro_batch(size: ModelSize, batch_size: int, max_length: int, available_bytes: float | None, *,
                    eval_batch_size: int | None = None, bytes_per_value: int = 4, checkpointing: bool = False,
                    source: str = "available memory") -> BatchFit:
    """The largest divisor of ``batch_size`` whose training step fits in :data:`HEADROOM` × ``available_bytes``.

    ``available_bytes`` None: no check (the recipe's batch as it is). Raises a one-line UserError when even one
    example of ``max_length`` tokens does not fit. The evaluation batch is fitted the same way (any size up to
    ``eval_batch_size``; evaluation keeps no gradients).
    """
    eval_batch = eval_batch_size or 2 * batch_size
    need = training_bytes(size, batch_size, max_length, bytes_per_value, checkpointing)
    if available_bytes is None:
        return BatchFit(batch_size, 1, eval_batch, need, None, "memory check off (training.memory_limit: off)")
    budget = HEADROOM * available_bytes
    for micro in _divisors_descending(batch_size):
        need = training_bytes(size, micro, max_length, bytes_per_value, checkpointing)
        if need <= budget:
            return BatchFit(micro, batch_size // micro, _fit_eval_batch(size, eval_batch, max_length, budget,
                                                                        bytes_per_value), need, budget,
                            _reason(batch_size, micro, max_length, need, budget, source))
    raise UserError(
        f"training needs about {need / GIB:.1f} GiB even at one example of {max_length} tokens, but only "
        f"{budget / GIB:.1f} GiB ({HEADROOM:.0%} of the {source}) is free; lower training.max_length, set "
        "training.gradient_checkpointing=true, use model.peft.method=lora, or pick a smaller model (tailor models "
        "--task ...)"
    )


def agree_across_processes(fit: BatchFit) -> BatchFit:
    """Data-parallel processes must take the same number of micro-steps per optimizer step, or their gradient
    all-reduces pair up wrongly and training hangs; each measured its own free memory, so the smallest micro-batch
    (a divisor of the batch, as each one is) wins. A single process returns ``fit`` as it is."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return fit
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    sizes = torch.tensor([fit.micro_batch, fit.eval_batch], device=device)
    dist.all_reduce(sizes, op=dist.ReduceOp.MIN)
    micro, eval_batch = (int(v) for v in sizes.tolist())
    if (micro, eval_batch) == (fit.micro_batch, fit.eval_batch):
        return fit
    batch = fit.micro_batch * fit.accumulation
    return BatchFit(micro, batch // micro, eval_batch, fit.need_bytes, fit.budget_bytes,
                    fit.reason + f"; micro-batch {micro}, the smallest any process can afford")


def _fit_eval_batch(size: ModelSize, eval_batch: int, max_length: int, budget: float, bytes_per_value: int) -> int:
    batch = eval_batch
    while batch > 1 and inference_bytes(size, batch, max_length, bytes_per_value) > budget:
        batch = max(1, batch // 2)
    return batch


def _reason(batch_size: int, micro: int, max_length: int, need: float, budget: float, source: str) -> str:
    if micro == batch_size:  # no free-memory figure here: metrics.json must not change with the machine's load
        return f"batch {batch_size} × {max_length} tokens fits (about {need / GIB:.1f} GiB)"
    return (f"batch {batch_size} × {max_length} tokens does not fit in {budget / GIB:.1f} GiB ({HEADROOM:.0%} of the "
            f"{source}): micro-batch {micro} × {batch_size // micro} accumulation steps (about "
            f"{need / GIB:.1f} GiB), effective batch unchanged")


def memory_budget(setting: str, on_gpu: bool) -> tuple[int | None, str]:
    """``training.memory_limit``: ``auto`` (the machine's free memory), ``off`` (no check), or a size (8GiB)."""
    if setting == "off":
        return None, "no check"
    if setting == "auto":
        return available_memory(on_gpu)
    from tailorlm.models.advisor import parse_memory

    try:
        return parse_memory(setting), "training.memory_limit"
    except UserError:
        raise UserError(f"training.memory_limit '{setting}': not a memory size; use auto, off, or a size such as "
                        "8GiB or 8000M") from None
