"""How the task losses are weighed, and whether the tasks' gradients on the shared encoder agree.

- ``fixed``: each task's loss times its ``loss_weight``;
- ``uncertainty`` (Kendall, Gal & Cipolla 2018): a learned log-variance s_t per task, loss_t · exp(-s_t) + s_t;
  a noisier task learns a larger s_t, so a smaller weight exp(-s_t). s_t is trained with the model in its own
  parameter group (``multitask.uncertainty_lr``, no weight decay): at a fine-tuning rate it would barely move;
- ``pcgrad`` (Yu et al. 2020, "Gradient surgery"): one batch of every task per step; where two tasks' gradients
  on the shared encoder point against each other (negative dot product), each is projected onto the other's
  normal plane before they are summed. Heads get their own task's gradient unchanged.

``cosines`` is the diagnostic: the cosine between every pair of tasks' mean gradients on the shared encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class UncertaintyWeights(nn.Module):
    """One learned log-variance per task; ``forward(t, loss)`` is the weighted loss of task ``t``."""

    def __init__(self, n_tasks: int) -> None:
        super().__init__()
        self.log_vars = nn.Parameter(torch.zeros(n_tasks))

    def forward(self, task: int, loss: torch.Tensor) -> torch.Tensor:
        s = self.log_vars[task]
        return torch.exp(-s) * loss + s

    def weights(self) -> list[float]:
        """exp(-s_t): the weight each task's loss gets now."""
        return [round(float(w), 6) for w in torch.exp(-self.log_vars.detach()).tolist()]


def pcgrad(grads: Sequence[torch.Tensor], seed: int = 0) -> torch.Tensor:
    """The sum of the tasks' flat gradients after projecting away each pairwise conflict (in a seeded order)."""
    generator = torch.Generator().manual_seed(seed)
    projected = [g.clone() for g in grads]
    for i, g in enumerate(projected):
        others = [j for j in torch.randperm(len(grads), generator=generator).tolist() if j != i]
        for j in others:
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g -= dot / grads[j].dot(grads[j]).clamp_min(1e-20) * grads[j]
    return torch.stack(projected).sum(dim=0)


def cosines(names: Sequence[str], grads: Sequence[torch.Tensor]) -> dict[str, float]:
    """``{"a|b": cosine}`` for every pair of tasks (negative: they pull the encoder apart)."""
    out: dict[str, float] = {}
    for i in range(len(grads)):
        for j in range(i + 1, len(grads)):
            value = torch.nn.functional.cosine_similarity(grads[i], grads[j], dim=0)
            out[f"{names[i]}|{names[j]}"] = round(float(value), 6)
    return out
