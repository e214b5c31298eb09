"""A causal LM's loss from the logits of the labelled tokens only, never the whole batch's fp32 logits.

A causal LM's head turns every position into ``V`` logits (49,152 for SmolLM2): batch × length × V floats, kept
three times over for the loss and its gradient, often more memory than the whole model. Two things shrink that:

- transformers 5 models take ``logits_to_keep``; a boolean (batch, length) mask keeps only the positions that
  predict a labelled token (the response; never the prompt or the padding), flattened to (tokens, V);
- the cross-entropy runs in chunks of :data:`CHUNK_TOKENS` tokens, each under activation checkpointing when
  gradients are on, so the fp32 copy and log-softmax of only one chunk exist at a time (recomputed in backward).

Used by ``ResumableTrainer.compute_loss`` (train/resume.py) during training and validation, and by the
perplexity of tasks/generation/task.py; models whose forward lacks ``logits_to_keep`` take the ordinary path.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

IGNORE = -100
#: tokens per cross-entropy chunk: 4,096 × 49,152 fp32 logits are 0.8 GiB per copy
CHUNK_TOKENS = 4096


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the model's forward (under a PEFT or compile wrapper) takes ``logits_to_keep``."""
    inner = getattr(model, "_orig_mod", model)  # torch.compile
    if callable(getattr(inner, "get_base_model", None)):  # PEFT passes its keyword arguments through
        inner = inner.get_base_model()
    try:
        return "logits_to_keep" in inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):
        return False


def next_token_mask(labels: torch.Tensor) -> torch.Tensor:
    """True at the positions whose logits predict a labelled next token (position t predicts label t + 1)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep


def _chunk_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum",
                                             label_smoothing=label_smoothing)


def chunked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
                          chunk: int = CHUNK_TOKENS) -> torch.Tensor:
    """The summed cross-entropy of (tokens, V) logits, one chunk at a time (checkpointed when gradients flow)."""
    total = logits.new_zeros((), dtype=torch.float32)
    for start in range(0, logits.shape[0], chunk):
        piece, wanted = logits[start : start + chunk], targets[start : start + chunk]
        if torch.is_grad_enabled() and piece.requires_grad:
            total = total + checkpoint(_chunk_loss, piece, wanted, label_smoothing, use_reentrant=False)
        else:
            total = total + _chunk_loss(piece, wanted, label_smoothing)
    return total


def labelled_token_loss(model: Any, inputs: dict[str, Any], labels: torch.Tensor, label_smoothing: float = 0.0,
                        ) -> tuple[torch.Tensor, int, Any]:
    """(summed loss over the labelled next tokens, their count, the model's outputs) through ``logits_to_keep``."""
    keep = next_token_mask(labels)
    outputs = model(**inputs, logits_to_keep=keep)
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    targets = labels[:, 1:][keep[:, :-1]]
    return chunked_cross_entropy(logits, targets, label_smoothing), int(targets.numel()), outputs
