"""Layer-wise learning-rate decay (LLRD): lower layers of a pretrained encoder move less than the new head.

The lower layers hold general language knowledge that a small labelled set should not wash out; the head is
new and must learn fast. With ``training.layer_lr_decay = d`` the head (and pooler, final norm: anything above
the last numbered layer) gets the full learning rate, the top layer ``lr * d``, the one below ``lr * d**2`` ... and
the embeddings, lowest of all, ``lr * d**(L+1)`` for L layers. ``1.0`` turns it off.

The groups go to the Trainer through ``optimizer_cls_and_kwargs`` with the optimizer class and arguments the
Trainer itself would choose for ``args.optim`` (so fused AdamW stays fused); the scheduler then scales every
group's own learning rate.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn
from transformers import Trainer, TrainingArguments

#: ``...encoder.layer.3.``, ``model.layers.3.``, ``transformer.h.3.``, ``encoder.block.3.``
_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h|block|blocks)\.(\d+)\.")
#: Parameters that are not decayed, as in Trainer.get_decay_parameter_names
_NO_DECAY = re.compile(r"bias|layernorm|layer_norm|rmsnorm|(?:^|\.)norm(?:$|\.)|_norm(?:$|\.)|LayerNorm", re.I)
_EMBEDDING = re.compile(r"embed|(?:^|\.)(?:wte|wpe|shared)\.")


def layer_depth(name: str, n_layers: int) -> int:
    """0 for embeddings, i + 1 for numbered layer i, n_layers + 1 for everything above (head, pooler)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if _EMBEDDING.search(name):
        return 0
    return n_layers + 1


def _no_decay_names(model: nn.Module) -> set[str]:
    """Biases and normalisation weights: weight decay would pull them to zero for no gain."""
    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or _NO_DECAY.search(full):
                names.add(full)
    return names


def layer_lr_groups(model: nn.Module, learning_rate: float, decay: float, weight_decay: float
                    ) -> list[dict[str, Any]]:
    """Optimizer parameter groups: one per (depth, decayed or not), each with its own ``lr``; trainable only."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    indices = [int(m.group(1)) for n, _ in named if (m := _LAYER.search(n))]
    n_layers = max(indices) + 1 if indices else 0
    no_decay = _no_decay_names(model)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in named:
        depth = layer_depth(name, n_layers)
        decayed = name not in no_decay
        group = groups.setdefault((depth, decayed), {
            "params": [],
            "lr": learning_rate * decay ** (n_layers + 1 - depth),
            "weight_decay": weight_decay if decayed else 0.0,
            "layer_depth": depth,
        })
        group["params"].append(param)
    return [groups[key] for key in sorted(groups)]


def optimizer_cls_and_kwargs(model: nn.Module, args: TrainingArguments, decay: float
                             ) -> tuple[type, dict[str, Any]] | None:
    """The Trainer's optimizer for ``args.optim`` with layer-decayed groups; None when the decay is off (1.0)."""
    if decay >= 1.0:
        return None
    optimizer_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
    groups = layer_lr_groups(model, args.learning_rate, decay, args.weight_decay)
    return optimizer_cls, {**kwargs, "params": groups}
