"""Domain-adversarial training (DANN, Ganin et al. 2016) as one extra loss term of the training objective.

A small domain classifier reads the mean-pooled last hidden state of the task model's body and learns to tell
source (training) batches from target (``adapt.target_unlabeled``) batches. Between the body and the classifier
sits a gradient-reversal layer: identity forward, ``-lambda`` times the gradient backward, so the classifier
minimises the domain loss while the body maximises it, i.e. learns features the domains share. ``lambda`` grows
from 0 to ``adapt.adversarial_max_lambda`` as ``cap * (2 / (1 + exp(-10 p)) - 1)`` over training progress ``p``,
so the task head settles before the reversal bites.

The source features come from the task model's own forward pass: a forward hook on the body keeps its last
hidden state (no second source forward). The target batch is drawn from a cycling loader over the tokenised
target texts and run through the same body. The classifier's parameters are exposed by ``parameters()``; the
trainer optimises them as an extra parameter group (train/resume.py ``ResumableTrainer.create_optimizer``). The
classifier is never part of the model, so the saved model reloads exactly as without adaptation.

Measured on a constructed two-domain problem (tests/test_dann.py): with SGD and momentum, as Ganin et al. train it,
a fresh domain classifier's held-out accuracy on the adapted features falls from 0.97 to chance (0.46) while the
target task accuracy stays at 1.0; with Adam (which the Trainer uses for the whole model) the same term only brings
it to 0.66-0.77 in as many steps: Adam's per-parameter scaling blunts the reversed gradient's weight.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import TrainerCallback

SCHEDULE = "max_lambda * (2 / (1 + exp(-10 p)) - 1)"
#: the term's state in a Trainer checkpoint folder (resume)
STATE_WEIGHTS, STATE_COUNTS = "dann_head.safetensors", "dann_state.json"


class GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient times ``-lambda`` backward."""

    @staticmethod
    def forward(ctx: Any, features: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = lambda_
        return features.view_as(features)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambda_ * grad, None


def reverse_gradient(features: torch.Tensor, lambda_: float) -> torch.Tensor:
    return GradientReversal.apply(features, lambda_)


class DomainHead(torch.nn.Module):
    """Linear-ReLU-Linear(2): source (0) or target (1) from a pooled feature vector."""

    def __init__(self, hidden_size: int, width: int = 256) -> None:
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(hidden_size, width), torch.nn.ReLU(),
                                          torch.nn.Linear(width, 2))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def schedule(progress: float, max_lambda: float) -> float:
    """The reversal weight at training progress ``progress`` in [0, 1] (Ganin et al. 2016, section 5.2.2)."""
    p = min(max(progress, 0.0), 1.0)
    return max_lambda * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)


def body_of(model: Any) -> Any:
    """The transformer body of a task model (``model.bert`` of a BERT classifier), under a peft wrapper too."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner, "base_model", inner)


def last_hidden(output: Any) -> torch.Tensor:
    return output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the hidden states over real tokens, L2-normalised: without a bound on their scale the body wins the
    adversarial game by inflating its features (so the domain head's logits) rather than by aligning the domains."""
    if attention_mask is None:
        return F.normalize(hidden.mean(dim=1), dim=-1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9), dim=-1)


def target_batches(tokenizer: Any, texts: Sequence[str], max_length: int, batch_size: int,
                   seed: int) -> Iterator[dict[str, torch.Tensor]]:
    """Padded batches of the tokenised target texts, reshuffled (seeded) each pass, forever."""
    from transformers import DataCollatorWithPadding

    encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
    rows = [{key: encoded[key][i] for key in encoded} for i in range(len(texts))]
    loader = DataLoader(rows, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                        collate_fn=DataCollatorWithPadding(tokenizer))
    while True:
        yield from loader


class DomainAdversarialLoss:
    """The DANN term: ``(model, inputs, outputs) -> domain cross-entropy`` through the gradient reversal.

    ``total_steps``: the training forward passes expected (micro-batches × epochs); each training call advances
    the progress ``p`` by one. Evaluation calls (no gradient, or the model in eval mode) add 0 and count nothing.
    """

    def __init__(self, body: Any, targets: Iterator[dict[str, torch.Tensor]], total_steps: int, max_lambda: float,
                 seed: int = 0) -> None:
        self._body = [body]  # in a list: the body's parameters are the model's, never this term's
        self.targets = targets
        self.total_steps = max(1, total_steps)
        self.max_lambda = max_lambda
        self.steps = 0
        self.last_lambda = 0.0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.head = DomainHead(body.config.hidden_size)
        self._grabbed: torch.Tensor | None = None
        self.totals = {"loss": 0.0, "correct": 0, "seen": 0}
        body.register_forward_hook(self._grab)

    def _grab(self, module: Any, args: Any, output: Any) -> None:
        if module.training and torch.is_grad_enabled():
            self._grabbed = last_hidden(output)

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The domain classifier's parameters, for the trainer's optimiser (never saved with the model)."""
        return self.head.parameters()

    @property
    def lambda_(self) -> float:
        return schedule(self.steps / self.total_steps, self.max_lambda)

    def __call__(self, model: Any, inputs: dict[str, Any], outputs: Any) -> torch.Tensor:
        source, self._grabbed = self._grabbed, None
        if source is None or not model.training or not torch.is_grad_enabled():
            return torch.zeros((), device=_logits_device(outputs))
        features = mean_pool(source, inputs.get("attention_mask"))
        target = {key: value.to(features.device) for key, value in next(self.targets).items()}
        target_hidden = last_hidden(self._body[0](**target))
        self._grabbed = None  # the target pass went through the hook too
        features = torch.cat([features, mean_pool(target_hidden, target.get("attention_mask"))])
        domains = torch.cat([torch.zeros(len(source), dtype=torch.long),
                             torch.ones(len(target_hidden), dtype=torch.long)]).to(features.device)
        self.head.to(features.device)
        lambda_ = self.last_lambda = self.lambda_
        logits = self.head(reverse_gradient(features, lambda_))
        loss = F.cross_entropy(logits.float(), domains)
        self._record(loss, logits, domains)
        self.steps += 1
        return loss

    def _record(self, loss: torch.Tensor, logits: torch.Tensor, domains: torch.Tensor) -> None:
        n = len(domains)
        self.totals["loss"] += float(loss.detach()) * n
        self.totals["correct"] += int((logits.detach().argmax(dim=-1) == domains).sum())
        self.totals["seen"] += n

    def stats(self) -> dict[str, Any]:
        """Running domain loss and accuracy of the classifier over training, the steps taken, the last lambda."""
        seen = self.totals["seen"]
        return {"steps": self.steps, "final_lambda": round(self.last_lambda, 6),
                "domain_loss": round(self.totals["loss"] / seen, 6) if seen else None,
                "domain_accuracy": round(self.totals["correct"] / seen, 6) if seen else None}


    # ---------------------------------------------------------------- resume (train/resume.py)
    def save(self, folder: Path) -> None:
        """The term's state beside a Trainer checkpoint: the domain head (safetensors), steps and totals (JSON).
        The head's optimizer state is in the checkpoint's optimizer file already (its extra parameter group)."""
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                  str(folder / STATE_WEIGHTS))
        (folder / STATE_COUNTS).write_text(json.dumps({"steps": self.steps, "totals": self.totals}),
                                           encoding="utf-8")

    def restore(self, folder: Path) -> bool:
        """Continue from a checkpoint's state: the head, the schedule's progress, the running totals, and the target
        batches advanced past those already drawn, so the resumed run sees what the uninterrupted one would have.
        False when the checkpoint has no DANN state (written before it existed): the term starts afresh."""
        from safetensors.torch import load_file

        if not (folder / STATE_WEIGHTS).is_file() or not (folder / STATE_COUNTS).is_file():
            return False
        self.head.load_state_dict(load_file(str(folder / STATE_WEIGHTS)))
        counts = json.loads((folder / STATE_COUNTS).read_text(encoding="utf-8"))
        self.steps, self.totals = int(counts["steps"]), dict(counts["totals"])
        for _ in range(self.steps):
            next(self.targets)
        return True


class SaveWithCheckpoints(TrainerCallback):
    """Writes the DANN term's state into every checkpoint the Trainer saves (``on_save`` comes after the files)."""

    def __init__(self, term: DomainAdversarialLoss) -> None:
        self.term = term

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            self.term.save(folder)


def _logits_device(outputs: Any) -> torch.device:
    logits = outputs["logits"] if hasattr(outputs, "keys") else outputs[0]
    return logits.device
