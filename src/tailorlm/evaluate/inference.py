"""Batched forward passes over texts, sorted by length so that little compute goes to padding.

Used by the baselines (pretrained sentence embeddings) and by evaluation/prediction of a tuned model. Sorting
texts by token length before batching and restoring the order afterwards gives the same outputs as unsorted
batching (padding is masked) at a fraction of the cost on long-tailed data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tailorlm.progress import advance, expect


def model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches in descending length order (the longest first, so an out-of-memory shows at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def forward_sorted(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    batch_size: int,
    head: Callable[[dict[str, torch.Tensor], object], torch.Tensor],
    pairs: Sequence[str] | None = None,
) -> np.ndarray:
    """Run ``model`` over ``texts`` in length-sorted batches; ``head(batch, outputs)`` picks what to keep.

    ``pairs``: a second text per text (sentence-pair inputs, tokenised as the tokenizer joins pairs).
    Returns a float32 array whose rows follow the order of ``texts``.
    """
    if len(texts) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    expect(len(texts))  # the command's progress bar, when one is open (progress.py)
    if pairs is not None:
        encoded = tokenizer(list(texts), list(pairs), truncation=True, max_length=max_length)
    else:
        encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    input_ids = encoded["input_ids"]
    device = model_device(model)
    was_training = model.training
    model.eval()
    rows: list[np.ndarray | None] = [None] * len(texts)
    for batch_idx in sorted_batches([len(ids) for ids in input_ids], batch_size):
        features = [{k: encoded[k][i] for k in encoded} for i in batch_idx]
        batch = tokenizer.pad(features, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        outputs = model(**batch)
        values = head(batch, outputs).float().cpu().numpy()
        for row, i in zip(values, batch_idx, strict=True):
            rows[i] = row
        advance(len(batch_idx))
    model.train(was_training)
    return np.stack(rows).astype(np.float32)


def mean_pooled(batch: dict[str, torch.Tensor], outputs: object) -> torch.Tensor:
    """Mean of the last hidden states over real tokens, L2-normalised: the sentence-transformers embedding."""
    hidden = outputs.last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def logits_of(batch: dict[str, torch.Tensor], outputs: object) -> torch.Tensor:
    return outputs.logits
