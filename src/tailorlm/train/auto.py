"""Data-aware training defaults: ``training.epochs/learning_rate/batch_size/warmup: auto``.

A user of a fine-tuning tool is rarely an expert in step counts and learning rates, and the textbook defaults
(3 epochs, 5e-5, batch 32) were tuned for BERT-base on tens of thousands of rows. On a few hundred rows they give
a few dozen optimizer steps, too few for a new head to learn anything (real CoNLL and SQuAD subsets: a tuned
model below its linear probe). The policy here fixes the *number of optimizer steps* rather than the number of
epochs on small sets, and picks the rate from the model's size and LoRA. It is written down, with the grid that
chose it, in docs/defaults.md; ``benchmarks/auto_grid.py`` reruns that grid.

Everything is resolved before training and recorded: the concrete value and a one-line reason per key go to
``metrics.json`` (``auto``), ``auto.json`` and the rewritten ``recipe.resolved.yaml``, so a run reproduces
exactly from its run directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tailorlm.recipe import AUTO_BATCH_STAND_IN, Recipe
from tailorlm.tasks import get_spec

#: Optimizer steps a small training set gets at least (epochs grow until reached, up to ``MAX_EPOCHS``).
MIN_STEPS = 300
#: Upper bound on epochs chosen automatically: beyond it a tiny set is memorised, and early stopping decides.
MAX_EPOCHS = 20
#: Epochs for a training set big enough that ``MIN_STEPS`` is reached in one pass, by size.
LARGE_SET_EPOCHS = ((200_000, 1), (50_000, 2), (0, 3))
#: Batch size by training-set size: small sets get more (noisier, regularising) updates per epoch.
SMALL_SET_ROWS = 2_000
#: Full fine-tuning learning rate by trainable parameters of the pretrained body (upper bound exclusive).
FULL_FT_RATES = ((50e6, 1e-4), (150e6, 5e-5), (400e6, 3e-5), (math.inf, 1e-5))
#: LoRA trains a few new matrices from zero: the field's usual rates are about ten times full fine-tuning's.
LORA_FACTOR = 10.0
LORA_MAX_RATE = 1e-3
WARMUP_RATIO = 0.1
#: Runs shorter than this many optimizer steps get no warm-up.
MIN_WARMUP_RUN = 20


@dataclass(frozen=True)
class Choice:
    """One resolved ``auto`` key: the value used and why, in words a reader can check."""

    value: Any
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"value": self.value, "reason": self.reason}


def is_auto(value: Any) -> bool:
    return isinstance(value, str) and value in ("auto", "find")


def choose_batch_size(n_train: int) -> Choice:
    if n_train < SMALL_SET_ROWS:
        return Choice(16, f"{n_train:,} training rows (< {SMALL_SET_ROWS:,}): batch 16 for more updates per epoch")
    return Choice(32, f"{n_train:,} training rows (>= {SMALL_SET_ROWS:,}): batch 32")


def optimizer_steps_per_epoch(n_train: int, batch_size: int, accumulation: int, processes: int = 1) -> int:
    return max(1, math.ceil(math.ceil(n_train / (batch_size * processes)) / accumulation))


def choose_epochs(n_train: int, steps_per_epoch: int, task: str | None = None) -> Choice:
    """Enough epochs for ``MIN_STEPS`` optimizer steps on small sets; 3, 2 or 1 epochs as the set grows."""
    cap = get_spec(task).auto_epoch_cap if task else None  # tasks/<name>/spec.py
    if cap is not None and steps_per_epoch * cap < MIN_STEPS:
        return Choice(cap, f"{n_train:,} rows give {steps_per_epoch} steps per epoch; {task} adapts a pretrained "
                           f"model that overfits a small set within a few passes: {cap} epochs")
    if steps_per_epoch * LARGE_SET_EPOCHS[-1][1] >= MIN_STEPS:
        epochs = next(e for rows, e in LARGE_SET_EPOCHS if n_train >= rows)
        return Choice(epochs, f"{n_train:,} rows give {steps_per_epoch} steps per epoch: {epochs} epoch(s) are "
                              f"at least {MIN_STEPS} optimizer steps")
    epochs = min(MAX_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))
    capped = f" (capped at {MAX_EPOCHS})" if epochs == MAX_EPOCHS else ""
    return Choice(epochs, f"{n_train:,} rows give only {steps_per_epoch} steps per epoch: {epochs} epochs{capped} "
                          f"for about {min(MIN_STEPS, epochs * steps_per_epoch)} optimizer steps; early stopping on "
                          "validation keeps the best")


def choose_learning_rate(task: str, body_params: int, lora: bool, model: Any = None) -> Choice:
    """From the body's size (smaller models take larger steps), the head's kind, and LoRA.

    A built model may state its own factor (``auto_lr_factor`` and ``auto_lr_reason``): regression's bi-encoder
    starts from an encoder already trained for its objective and takes smaller steps than a new head would."""
    base = next(rate for limit, rate in FULL_FT_RATES if body_params < limit)
    size = f"{body_params / 1e6:.0f}M-parameter body"
    factor = get_spec(task).auto_lr_factor  # tasks/<name>/spec.py: heads that start from nothing
    reason = f"{task}'s new head"
    if getattr(model, "auto_lr_factor", None) is not None:
        factor, reason = float(model.auto_lr_factor), str(model.auto_lr_reason)
    rate, why = base * factor, f"{base:g} for a {size}"
    if factor != 1.0:
        why += f", x{factor:g} for {reason}"
    if lora:
        rate = min(LORA_MAX_RATE, rate * LORA_FACTOR)
        why += f", x{LORA_FACTOR:g} for LoRA (max {LORA_MAX_RATE:g})"
    return Choice(float(f"{rate:.3g}"), why)


def resolve_data_dependent(recipe: Recipe, n_train: int) -> dict[str, Choice]:
    """Fill ``batch_size``, ``epochs`` and ``warmup`` when they are ``auto`` (needs the training-set size).

    Called once the data is prepared, before anything reads these keys; mutates ``recipe.training``.
    """
    t = recipe.training
    choices: dict[str, Choice] = {}
    if is_auto(t.batch_size):
        choices["training.batch_size"] = choose_batch_size(n_train)
        t.batch_size = choices["training.batch_size"].value
    steps = optimizer_steps_per_epoch(n_train, int(t.batch_size), t.gradient_accumulation, t.num_processes)
    if is_auto(t.epochs):
        choices["training.epochs"] = choose_epochs(n_train, steps, recipe.task)
        t.epochs = choices["training.epochs"].value
    if is_auto(t.warmup):
        choices["training.warmup"] = choose_warmup(math.ceil(steps * float(t.epochs)))
        t.warmup = choices["training.warmup"].value
    return choices


def choose_warmup(total_steps: int) -> Choice:
    """A tenth of the steps, but none for a handful: one warm-up step out of one trains at rate zero."""
    if total_steps < MIN_WARMUP_RUN:
        return Choice(0.0, f"only {total_steps} optimizer steps: no warm-up (it would spend them near rate zero)")
    return Choice(WARMUP_RATIO, f"{WARMUP_RATIO:g} of the {total_steps} optimizer steps")


def resolve_learning_rate(recipe: Recipe, task: str, body_params: int, model: Any = None) -> dict[str, Choice]:
    """Fill ``learning_rate: auto`` from the built model (``find`` is resolved by the LR range test instead)."""
    if recipe.training.learning_rate != "auto":
        return {}
    choice = choose_learning_rate(task, body_params, recipe.model.peft.method == "lora", model)
    recipe.training.learning_rate = choice.value
    return {"training.learning_rate": choice}


def nominal(recipe: Recipe) -> Recipe:
    """A copy with ``auto`` values filled by size-free stand-ins, for commands that have no data yet
    (``tailor estimate``, the advisor): batch 32, 3 epochs, rate 5e-5, warm-up 0.1."""
    copy = recipe.model_copy(deep=True)
    t = copy.training
    stand_ins = (("batch_size", AUTO_BATCH_STAND_IN), ("epochs", 3), ("learning_rate", 5e-5), ("warmup", WARMUP_RATIO))
    for key, stand_in in stand_ins:
        if is_auto(getattr(t, key)):
            setattr(t, key, stand_in)
    return copy


def body_parameters(model: Any) -> int:
    """Parameters of the pretrained body (the whole model minus a freshly built head is close enough)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return sum(p.numel() for p in base.parameters())
