"""Learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks", section 3.3;
fastai's ``lr_find`` is the familiar implementation): ``training.learning_rate: find`` and ``tailor lr-find``.

A short sweep trains the freshly built model on training batches while the learning rate grows exponentially,
from ``START_LR`` to ``END_LR`` over ``SWEEP_STEPS`` optimizer steps, and records the loss at each step. At tiny
rates nothing moves; at some point the loss starts to fall; past the best rate it rises and finally explodes.
The sweep stops when the smoothed loss exceeds ``DIVERGE_FACTOR`` times its best (or is not finite). Afterwards
the model's weights, its train/eval mode and every random-number generator the sweep touched are restored, so
the real training starts exactly where it would have without the sweep.

**The rule** (``RULE``): the suggested rate is the rate of *steepest descent* of the smoothed loss (per decade
of rate), searched between the start and the minimum: where one step's worth of rate buys the most loss, the
model learns fastest while the loss still responds smoothly; at the minimum it is about to turn up. It is one of
fastai's suggestions (``steep``). The rule was chosen on measurements, not by taste (docs/defaults.md, "Fourth
round"): on the three real sets with a learning-rate grid (book-review classification, SQuAD QA, CoNLL NER) the
steepest point fell inside the grid's good span every time, while the older "minimum / 10" (Smith's and the
fastai course's rule) fell a decade low on classification and low on QA, because how far below the minimum the
good rates lie differs by task (from 1.2x on classification to 11x on NER). The minimum and minimum / 10 are
recorded too (``min_lr``, ``min_over_ten``), for reading the plot.
The suggestion uses a *centred* moving average of the loss (no lag: the whole curve is known once the sweep has
stopped); the stopping test, which must run online, uses an exponential moving average.

Everything is the task's own: its collator, its model's forward and loss (``outputs.loss``, so causal-LM masks,
QA spans and tag losses are the ones training uses), with AdamW, the recipe's weight decay, gradient clipping
and gradient accumulation, as training has them. Not mirrored: label smoothing, per-example weights
(fairness reweighing) and layer-wise rate decay; the sweep measures how the loss responds to the step size, for
which the plain loss suffices. Only torch is used: a hundred forward/backward steps do not need the Trainer.
"""

from __future__ import annotations

import inspect
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.console import Console

from tailorlm.recipe import Recipe
from tailorlm.tasks.base import EncodedSplits, Task
from tailorlm.train.auto import Choice
from tailorlm.train.speed import checkpointing_name

START_LR = 1e-7
END_LR = 1.0
#: optimizer steps of the sweep: 100 points over 7 decades, about 14 per decade (a tiny set is cycled: the sweep
#: measures the loss's response to the step size, not generalisation)
SWEEP_STEPS = 100
#: stop once the (exponentially) smoothed loss is this many times its best: the rate is far past useful
DIVERGE_FACTOR = 4.0
#: weight of the past in the stopping test's moving average (about 10 steps of memory)
EMA_BETA = 0.9
#: minimum / this is the older rule, still recorded beside the suggestion
SAFETY_FACTOR = 10.0
#: the curve must fall at least this share below its start, or there is nothing to suggest
MIN_DROP = 0.02
RULE = ("the rate of steepest descent of the smoothed loss before its minimum (fastai's 'steep'): the model learns "
        "fastest there while the loss still responds smoothly; chosen over minimum/10 on three real sets' grids")
LABEL_COLUMNS = ("label", "labels", "label_ids")


@dataclass
class LRFind:
    """One sweep: rate and loss per step, the smoothed curve, and the suggested rate (None: no clear descent)."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float | None
    min_lr: float | None
    steepest_lr: float | None
    stopped: str
    batch_size: int
    seconds: float
    rule: str = RULE
    note: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "suggestion": self.suggestion, "rule": self.rule, "min_lr": self.min_lr, "steepest_lr": self.steepest_lr,
            "min_over_ten": float(f"{self.min_lr / SAFETY_FACTOR:.3g}") if self.min_lr else None,
            "stopped": self.stopped, "note": self.note, "steps": len(self.lrs), "batch_size": self.batch_size,
            "seconds": round(self.seconds, 3), "settings": self.settings,
            "lrs": [float(f"{v:.6g}") for v in self.lrs], "losses": [_round(v) for v in self.losses],
            "smoothed": [_round(v) for v in self.smoothed],
        }


def _round(value: float) -> float | None:
    return float(f"{value:.6g}") if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------ the curve


def sweep_rates(start: float, end: float, steps: int) -> np.ndarray:
    """``steps`` rates, evenly spaced in log scale from ``start`` to ``end`` inclusive."""
    return np.geomspace(start, end, num=max(2, steps))


def centred_smooth(values: list[float], half_window: int | None = None) -> np.ndarray:
    """Moving mean over ``2k+1`` neighbours (fewer at the ends): no lag, unlike an exponential average."""
    x = np.asarray(values, dtype=float)
    k = half_window if half_window is not None else max(2, len(x) // 20)
    return np.array([x[max(0, i - k): i + k + 1].mean() for i in range(len(x))])


def suggest(lrs: list[float], losses: list[float]) -> tuple[float | None, float | None, float | None, str]:
    """(suggestion, rate at the smoothed minimum, rate of steepest descent, note) by ``RULE``."""
    finite = [i for i, v in enumerate(losses) if math.isfinite(v)]
    if len(finite) < 5:
        return None, None, None, "fewer than 5 finite losses: the sweep diverged at once"
    lr = np.asarray([lrs[i] for i in finite])
    smooth = centred_smooth([losses[i] for i in finite])
    best = int(np.argmin(smooth))
    slope = np.gradient(smooth, np.log10(lr))
    steepest = float(lr[int(np.argmin(slope[: best + 1]))])
    if smooth[best] > smooth[0] * (1 - MIN_DROP):
        return None, float(lr[best]), steepest, (f"the smoothed loss never fell {MIN_DROP:.0%} below its start "
                                                 "(no rate in the sweep trained the model)")
    return float(f"{steepest:.3g}"), float(lr[best]), steepest, ""


# ------------------------------------------------------------------------------------------ the sweep


def find_learning_rate(task: Task, model: Any, tokenizer: Any, encoded: EncodedSplits, recipe: Recipe,
                       console: Console | None = None, *, start: float = START_LR, end: float = END_LR,
                       steps: int = SWEEP_STEPS) -> LRFind:
    """Run the range test on ``encoded.train`` and restore the model; see the module docstring for the rule."""
    t = recipe.training
    batch_size = int(t.batch_size) if not isinstance(t.batch_size, str) else 16
    started = time.perf_counter()
    with _restored(model):
        lrs, losses, stopped = _sweep(task, model, tokenizer, encoded, recipe, batch_size,
                                      sweep_rates(start, end, steps))
    suggestion, min_lr, steepest, note = suggest(lrs, losses)
    finite = [v for v in losses if math.isfinite(v)]
    smoothed = list(centred_smooth(finite)) + [math.nan] * (len(losses) - len(finite)) if finite else []
    found = LRFind(lrs, losses, smoothed, suggestion, min_lr, steepest, stopped, batch_size,
                   time.perf_counter() - started, note=note,
                   settings={"start": start, "end": end, "planned_steps": steps, "optimizer": "AdamW",
                             "weight_decay": t.weight_decay, "max_grad_norm": t.max_grad_norm,
                             "gradient_accumulation": t.gradient_accumulation, "seed": t.seed})
    if console is not None:
        result = (f"suggested learning rate {suggestion:g} (minimum at {min_lr:g})" if suggestion
                  else f"no suggestion: {note}")
        console.print(f"lr-find: {len(lrs)} steps in {found.seconds:.1f} s, {stopped}; {result}")
    return found


def _sweep(task: Task, model: Any, tokenizer: Any, encoded: EncodedSplits, recipe: Recipe, batch_size: int,
           rates: np.ndarray) -> tuple[list[float], list[float], str]:
    """On the GPU when there is one, in training mode, with gradient checkpointing when training will use it."""
    t = recipe.training
    device = torch.device("cuda") if torch.cuda.is_available() else next(model.parameters()).device
    model.to(device)
    model.train()
    name = checkpointing_name()  # gradient_ or activation_checkpointing, as the installed transformers calls it
    checkpointing = bool(t.gradient_checkpointing and hasattr(model, f"{name}_enable"))
    if checkpointing:  # the memory training will have (the Trainer turns it on again itself)
        getattr(model, f"{name}_enable")(**{f"{name}_kwargs": {"use_reentrant": False}})
    try:
        return _steps(task, model, tokenizer, encoded, recipe, batch_size, rates, device)
    finally:
        if checkpointing:
            getattr(model, f"{name}_disable")()


def _steps(task: Task, model: Any, tokenizer: Any, encoded: EncodedSplits, recipe: Recipe, batch_size: int,
           rates: np.ndarray, device: torch.device) -> tuple[list[float], list[float], str]:
    """The sweep itself: one optimizer step per rate, stopping when the loss diverges."""
    from tailorlm.train.trainer import use_bf16

    t = recipe.training
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(rates[0]), weight_decay=t.weight_decay)
    batches = _batches(task, model, tokenizer, encoded, batch_size, t.seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and use_bf16(recipe))
    lrs: list[float] = []
    losses: list[float] = []
    ema, best = 0.0, math.inf
    for step, rate in enumerate(rates, start=1):
        for group in optimizer.param_groups:
            group["lr"] = float(rate)
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(t.gradient_accumulation):
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in next(batches).items()}
            with autocast:
                loss = model(**batch).loss
            if loss is None:
                raise RuntimeError(f"task {task.name}: the model returned no loss on a training batch")
            (loss / t.gradient_accumulation).backward()
            loss_sum += float(loss.detach().float())
        value = loss_sum / t.gradient_accumulation
        lrs.append(float(rate))
        losses.append(value)
        if not math.isfinite(value):
            return lrs, losses, f"stopped at rate {rate:.3g}: the loss is not finite"
        ema = EMA_BETA * ema + (1 - EMA_BETA) * value
        smoothed = ema / (1 - EMA_BETA ** step)  # bias-corrected: the first steps are not pulled towards 0
        best = min(best, smoothed)
        if step > 5 and smoothed > DIVERGE_FACTOR * best:
            return lrs, losses, f"stopped at rate {rate:.3g}: the smoothed loss exceeded {DIVERGE_FACTOR:g}x its best"
        if t.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        optimizer.step()
    return lrs, losses, f"ran all {len(rates)} steps up to rate {rates[-1]:.3g}"


def _batches(task: Task, model: Any, tokenizer: Any, encoded: EncodedSplits, batch_size: int, seed: int) -> Any:
    """Endless shuffled training batches through the task's collator, with only the columns the model takes."""
    from torch.utils.data import DataLoader

    dataset = encoded.train
    keep = forward_columns(model)
    unused = [c for c in dataset.column_names if c not in keep]
    if unused:
        dataset = dataset.remove_columns(unused)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, collate_fn=task.collator(tokenizer),
                        generator=generator)
    while True:
        yield from loader


def forward_columns(model: Any) -> set[str]:
    """Argument names of the model's forward (the base model's under peft) plus the label names, as Trainer keeps."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return set(inspect.signature(inner.forward).parameters) | set(LABEL_COLUMNS)


class _restored:
    """Snapshot trainable weights, buffers, mode, device and RNG states; put them all back on exit."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __enter__(self) -> None:
        m = self.model
        self.training = m.training
        self.device = next(m.parameters()).device
        self.weights = {n: p.detach().to("cpu", copy=True) for n, p in m.named_parameters() if p.requires_grad}
        self.buffers = {n: b.detach().to("cpu", copy=True) for n, b in m.named_buffers()}
        self.rng = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                    np.random.get_state(), random.getstate())

    def __exit__(self, *exc: Any) -> None:
        m = self.model
        m.to(self.device)
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name in self.weights:
                    p.copy_(self.weights[name])
                p.grad = None
            for name, b in m.named_buffers():
                if name in self.buffers:
                    b.copy_(self.buffers[name])
        m.train(self.training)
        cpu, cuda, numpy_state, python_state = self.rng
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------ pipeline hooks


def resolve_found_rate(task: Task, model: Any, tokenizer: Any, encoded: EncodedSplits, recipe: Recipe,
                       console: Console) -> tuple[Choice, LRFind]:
    """``training.learning_rate: find``: run the test, set the recipe's rate, and say why.

    Without a clear descent the ``auto`` policy's rate is used instead, and the reason says so.
    """
    from tailorlm.train import auto

    found = find_learning_rate(task, model, tokenizer, encoded, recipe, console)
    if found.suggestion is not None:
        choice = Choice(found.suggestion, f"range test: minimum of the smoothed loss at {found.min_lr:.3g}, / 10")
    else:
        fallback = auto.choose_learning_rate(task.name, auto.body_parameters(model),
                                             recipe.model.peft.method == "lora", model)
        choice = Choice(fallback.value, f"range test gave no suggestion ({found.note}); auto: {fallback.reason}")
    recipe.training.learning_rate = choice.value
    return choice, found
