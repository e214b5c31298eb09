"""What the pretrained model could already do, measured on the same test split as the tuned model.

Two baselines answer "was fine-tuning worth it?": zero-shot (nearest label description in the pretrained
sentence-embedding space) and a linear probe (logistic regression on frozen embeddings, the strongest cheap
alternative to fine-tuning). Both use the same metric code as the tuned model.

Extractive QA's linear probe is the span probe: a linear start/end head (what the tuned model's span head is) fitted
on the frozen features the head reads, with a fixed budget (L-BFGS, the L2 strength picked on held-out questions).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

from tailorlm.evaluate.metrics import classification_metrics, softmax
from tailorlm.evaluate.predictions import per_example_labels

# Cosine similarities live in [-1, 1]; a CLIP-like temperature turns them into usable probabilities for ECE.
ZERO_SHOT_SCALE = 20.0


def label_prompt(label: str, descriptions: dict[str, str]) -> str:
    """The text embedded for a label: its description if the recipe gives one, else its name made readable."""
    return descriptions.get(label) or label.replace("_", " ").replace("-", " ")


def zero_shot(
    text_embeddings: np.ndarray, label_embeddings: np.ndarray, y_true: np.ndarray, labels: Sequence[str]
) -> dict:
    """Predict the label whose description embedding is closest (cosine) to the text embedding."""
    similarity = text_embeddings @ label_embeddings.T
    probs = softmax(similarity * ZERO_SHOT_SCALE)
    metrics = classification_metrics(y_true, probs.argmax(axis=1), labels, probs)
    metrics["per_example"] = per_example_labels(probs, list(labels))  # popped into predictions.jsonl
    metrics["method"] = "cosine similarity between pretrained sentence embeddings of the text and of each label"
    return metrics


def linear_probe(
    train_embeddings: np.ndarray,
    train_y: np.ndarray,
    test_embeddings: np.ndarray,
    test_y: np.ndarray,
    labels: Sequence[str],
    seed: int = 42,
) -> dict:
    """Logistic regression on frozen embeddings, its regularisation chosen by 3-fold CV on the training rows."""
    min_class = int(np.bincount(train_y, minlength=len(labels))[np.unique(train_y)].min())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if min_class >= 3:
            probe = LogisticRegressionCV(Cs=[0.1, 1.0, 10.0], cv=3, max_iter=2000, random_state=seed)
        else:
            probe = LogisticRegression(max_iter=2000, random_state=seed)
        probe.fit(train_embeddings, train_y)
    probs = np.zeros((len(test_y), len(labels)), dtype=np.float64)
    probs[:, probe.classes_] = probe.predict_proba(test_embeddings)
    metrics = classification_metrics(test_y, probs.argmax(axis=1), labels, probs)
    metrics["per_example"] = per_example_labels(probs, list(labels))  # popped into predictions.jsonl
    chosen_c = float(np.atleast_1d(probe.C_)[0]) if hasattr(probe, "C_") else probe.C
    metrics["method"] = (
        f"logistic regression (C={chosen_c:g}) on frozen mean-pooled pretrained embeddings of "
        f"{len(train_y)} training rows"
    )
    return metrics


# ---------------------------------------------------------------------------------------------- span probe (qa)

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
