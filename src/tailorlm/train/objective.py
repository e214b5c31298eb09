"""One training objective: the task's loss per example, times the example's weight, plus extra terms.

Trainer's own loss is a batch mean (over examples, or over labelled tokens for a language model). A per-example
weight (fairness reweighing; instance weighting for a domain shift) needs each example's loss first, so
``per_example_loss`` computes it for every kind of head from the model's outputs and the batch's labels, with the
conventions the models' own losses use: ``-100`` labels ignored, a causal LM's labels shifted by one, a QA span's
start and end losses averaged. The weighted loss is ``sum(w * loss) / sum(w)``: with every weight 1 each example
counts once (a language model's example is the mean over its labelled tokens).

Extra terms (a domain-adversarial loss, a multi-task balance) are callables registered on the ``Objective``; the
trainer calls the objective and knows nothing else. Without weights or extra terms the trainer keeps the model's
own loss, so an ordinary run's numbers are Trainer's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

#: a column of the encoded training set holding per-example loss weights (fairness reweighing, fairness/)
WEIGHT_COLUMN = "weight"
#: peft's task type of a head -> how its loss is computed per example
LOSS_KIND = {"SEQ_CLS": "example", "TOKEN_CLS": "token", "SEQ_2_SEQ_LM": "seq2seq", "CAUSAL_LM": "causal",
             "QUESTION_ANS": "span"}
#: the batch keys holding the targets of each kind (popped before the forward pass: the model must not reduce)
TARGET_KEYS = {"example": ("labels",), "token": ("labels",), "seq2seq": ("labels",), "causal": ("labels",),
               "span": ("start_positions", "end_positions"), "mse": ("labels",), "huber": ("labels",)}

ExtraTerm = Callable[[Any, dict[str, Any], Any], torch.Tensor]


def _logits(outputs: Any, name: str = "logits") -> torch.Tensor:
    return outputs[name] if isinstance(outputs, dict) or hasattr(outputs, "keys") else outputs[0]


def token_mean(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mean cross-entropy over each row's labelled tokens (``-100`` ignored); a row with none contributes 0."""
    flat = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none",
                           ignore_index=-100, label_smoothing=label_smoothing).view(labels.shape)
    counted = (labels != -100).sum(dim=1)
    return flat.sum(dim=1) / counted.clamp_min(1)


def per_example_loss(outputs: Any, targets: dict[str, torch.Tensor], kind: str,
                     label_smoothing: float = 0.0, huber_delta: float = 1.0) -> torch.Tensor:
    """One loss per example of the batch, the way the head's own loss is defined (``mse``/``huber``: a
    one-output regression head against a float target)."""
    if kind in ("mse", "huber"):
        predicted = _logits(outputs).float().reshape(-1)
        target = targets["labels"].float().reshape(-1)
        if kind == "mse":
            return F.mse_loss(predicted, target, reduction="none")
        return F.huber_loss(predicted, target, reduction="none", delta=huber_delta)
    if kind == "example":
        return F.cross_entropy(_logits(outputs).float(), targets["labels"], reduction="none",
                               label_smoothing=label_smoothing)
    if kind in ("token", "seq2seq"):
        return token_mean(_logits(outputs), targets["labels"], label_smoothing)
    if kind == "causal":  # position t predicts token t+1
        return token_mean(_logits(outputs)[:, :-1, :], targets["labels"][:, 1:], label_smoothing)
    if kind == "span":
        start, end = _logits(outputs, "start_logits"), _logits(outputs, "end_logits")
        ignored = start.shape[1]  # as the QA heads do: a position past the sequence is ignored

        def side(logits: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits.float(), positions.clamp(0, ignored), reduction="none",
                                   ignore_index=ignored)

        return (side(start, targets["start_positions"]) + side(end, targets["end_positions"])) / 2
    raise ValueError(f"no per-example loss for head kind '{kind}'")


def weighted_mean(per_example: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_example.mean()
    weights = weights.to(per_example.device, per_example.dtype)
    return (per_example * weights).sum() / weights.sum().clamp_min(1e-12)


@dataclass
class Objective:
    """The loss a training step minimises: weighted per-example task loss + registered extra terms."""

    kind: str
    label_smoothing: float = 0.0
    extra_terms: list[ExtraTerm] = field(default_factory=list)
    huber_delta: float = 1.0

    @classmethod
    def for_head(cls, peft_task_type: str, label_smoothing: float = 0.0) -> Objective:
        return cls(LOSS_KIND[peft_task_type], label_smoothing)

    def takes_over(self, inputs: dict[str, Any]) -> bool:
        """Whether this batch needs the objective (weights or extra terms), not the model's own loss."""
        return WEIGHT_COLUMN in inputs or bool(self.extra_terms) or self.kind == "huber"  # not the model's own

    def __call__(self, model: Any, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        inputs = dict(inputs)
        weights = inputs.pop(WEIGHT_COLUMN, None)
        targets = {key: inputs.pop(key) for key in TARGET_KEYS[self.kind] if key in inputs}
        if self.kind == "seq2seq" and "decoder_input_ids" not in inputs:  # what the model derives from its labels
            inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels=targets["labels"])
        outputs = model(**inputs)
        per_example = per_example_loss(outputs, targets, self.kind, self.label_smoothing, self.huber_delta)
        loss = weighted_mean(per_example, weights)
        for term in self.extra_terms:
            loss = loss + term(model, inputs, outputs)
        return loss, outputs
