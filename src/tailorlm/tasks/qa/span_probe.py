"""Extractive QA's linear probe, the span probe: what a pretrained encoder could already do for QA.

A linear start/end head (what the tuned model's span head is) fitted on the frozen features the head reads, with a
fixed budget (L-BFGS, the L2 strength picked on held-out questions), as classification's linear probe
(tasks/classification/baselines.py) is logistic regression on frozen embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: L2 strengths tried for the span probe, chosen on held-out training questions like the linear probe's C.
SPAN_PROBE_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1)
#: L-BFGS iterations per fit: the fixed budget (the problem is convex, it converges well within it).
SPAN_PROBE_MAX_ITER = 100
#: Share of the training questions held out to choose the penalty.
SPAN_PROBE_HOLDOUT = 0.2


@dataclass
class SpanFeatures:
    """What a span head reads, per window: features (tokens x hidden), the gold start and end token of each window,
    and the question each window came from (a question's windows are held out together)."""

    features: list[torch.Tensor]
    starts: list[int]
    ends: list[int]
    groups: list[int]

    def subset(self, keep: np.ndarray) -> SpanFeatures:
        idx = [i for i, k in enumerate(keep) if k]
        return SpanFeatures([self.features[i] for i in idx], [self.starts[i] for i in idx],
                            [self.ends[i] for i in idx], [self.groups[i] for i in idx])


def _span_nll(weight: torch.Tensor, data: SpanFeatures) -> torch.Tensor:
    """Mean over windows of the start and end cross-entropy, each a softmax over the window's own tokens.

    Tokens of all windows sit in one (tokens, hidden) matrix, so one matmul scores them; the per-window
    log-sum-exp is a scatter over window ids. A bias would cancel in every softmax, so the head has none."""
    x = torch.cat(data.features)
    lengths = torch.tensor([len(f) for f in data.features])
    window = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    logits = x @ weight  # (tokens, 2): start and end scores
    top = torch.zeros(len(lengths), 2).scatter_reduce(0, window[:, None].expand(-1, 2), logits.detach(), "amax",
                                                      include_self=False)
    sums = torch.zeros(len(lengths), 2).index_add(0, window, torch.exp(logits - top[window]))
    log_z = torch.log(sums) + top
    gold = logits[first + torch.tensor(data.starts), 0] + logits[first + torch.tensor(data.ends), 1]
    return (log_z.sum(dim=1) - gold).mean() / 2


def fit_span_head(data: SpanFeatures, penalty: float, max_iter: int = SPAN_PROBE_MAX_ITER) -> torch.Tensor:
    """The (hidden, 2) start/end weights minimising the span cross-entropy + ``penalty`` x squared norm (L-BFGS)."""
    weight = torch.zeros(data.features[0].shape[1], 2, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = _span_nll(weight, data) + penalty * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach()


def span_probe(data: SpanFeatures, seed: int = 42) -> tuple[torch.Tensor, float]:
    """A linear start/end head on frozen features, its L2 chosen by held-out span cross-entropy on a fifth of the
    training questions (as classification's probe chooses C by CV), then refitted on all. Returns (weights, L2)."""
    questions = np.unique(data.groups)
    held = np.random.default_rng(seed).permutation(questions)[: max(1, int(len(questions) * SPAN_PROBE_HOLDOUT))]
    is_held = np.isin(np.array(data.groups), held)
    penalty = SPAN_PROBE_PENALTIES[len(SPAN_PROBE_PENALTIES) // 2]
    if len(questions) >= 5 and is_held.any() and not is_held.all():
        fit, check = data.subset(~is_held), data.subset(is_held)
        with torch.no_grad():
            scores = {p: float(_span_nll(fit_span_head(fit, p), check)) for p in SPAN_PROBE_PENALTIES}
        penalty = min(scores, key=scores.__getitem__)
    return fit_span_head(data, penalty), penalty
