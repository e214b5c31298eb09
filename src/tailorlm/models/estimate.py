"""How much memory a recipe needs, from the model's config alone: no weights are read.

The model is built on the meta device (``accelerate.init_empty_weights``), which gives exact parameter counts
for the task's head and, for LoRA, for the adapters. Memory per training process is then

- weights: ``P × 4`` bytes (fp32 master weights; bf16 autocast keeps them in fp32 too);
- gradients: ``T × 4`` bytes, for the ``T`` trainable parameters (``T = P`` for a full fine-tune);
- AdamW states: ``T × 8`` bytes (two fp32 moments);
- activations, per Korthikanti et al. (2022, "Reducing activation recomputation"), for ``L`` layers, batch ``b``,
  sequence ``s``, hidden ``h``, ``a`` heads: ``L · s · b · h · (34 + 5 · a · s / h)`` bytes with 16-bit
  activations, twice that in fp32 (attention through SDPA/flash stores less: the ``5 a s / h`` term shrinks);
  with gradient checkpointing only each layer's input is kept, ``L · s · b · h · 2`` (or 4) bytes, plus one
  layer's full activations during its recomputation. LoRA still back-propagates through every layer, so its
  activations are the same as a full fine-tune's;
- logits of a causal LM: ``b · s · V`` fp32 floats three times (the logits, the log-softmax the loss keeps for
  backward, and the logits' gradient): :data:`LOGIT_COPIES`.

These are estimates of the dominant terms: the CUDA context (~0.5 GiB), allocator fragmentation and temporary
buffers come on top, so leave 10-20% headroom.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

GIB = 2**30
#: fp32 copies of a causal LM's full-vocabulary logits alive at the peak of a training step (module docstring)
LOGIT_COPIES = 3


@dataclass(frozen=True)
class Shape:
    """What the activation formula needs from a model config."""

    layers: int
    hidden: int
    heads: int
    vocab: int
    max_positions: int


def config_shape(config: Any) -> Shape:
    """Layers, width, heads, vocabulary and position limit, whatever the family calls them."""

    def first(*names: str, default: int = 0) -> int:
        for name in names:
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return default

    return Shape(
        layers=first("num_hidden_layers", "n_layer", "num_layers", "encoder_layers"),
        hidden=first("hidden_size", "n_embd", "d_model", "dim"),
        heads=first("num_attention_heads", "n_head", "encoder_attention_heads", "num_heads", default=1),
        vocab=first("vocab_size"),
        max_positions=first("max_position_embeddings", "n_positions", "max_seq_len", default=512),
    )


def meta_model(auto_class: Any, config: Any) -> nn.Module:
    """The model with its task head, parameters on the meta device (shapes only, no memory, no file read).

    Tied weights (a causal LM's head, T5's shared embeddings) are not tied under ``init_empty_weights`` in
    transformers 5, so they would be counted twice: ``tie_weights`` ties them as ``from_pretrained`` would.
    """
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = auto_class.from_config(config)
    model.tie_weights()
    return model


def lora_trainable(model: nn.Module, targets: list[str], r: int, head_names: tuple[str, ...]) -> int:
    """LoRA adds ``r × (in + out)`` per adapted Linear; the task head (if any) stays fully trainable."""
    adapters = sum(
        r * (module.in_features + module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets
    )
    head = sum(
        p.numel() for name, module in model.named_children() if name in head_names for p in module.parameters()
    )
    return adapters + head


HEAD_NAMES = ("classifier", "score", "qa_outputs", "pre_classifier")


@dataclass(frozen=True)
class MemoryRow:
    setting: str
    trainable: int
    weights: float
    gradients: float
    optimizer: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations


def activation_bytes(shape: Shape, batch: int, seq: int, bytes_per_value: int, checkpointing: bool,
                     causal_lm: bool) -> float:
    """The formula of the module docstring, in bytes."""
    s, b, h, a, n_layers = seq, batch, shape.hidden, shape.heads, shape.layers
    scale = bytes_per_value / 2
    per_layer = s * b * h * (34 + 5 * a * s / max(h, 1)) * scale
    total = (n_layers * s * b * h * bytes_per_value + per_layer) if checkpointing else n_layers * per_layer
    if causal_lm:
        total += LOGIT_COPIES * b * s * shape.vocab * 4
    return total


def memory_rows(total: int, lora: int, shape: Shape, batch: int, seq: int, checkpointing: bool,
                causal_lm: bool) -> list[MemoryRow]:
    """Full and LoRA fine-tunes, fp32 and bf16 autocast, in bytes per process."""
    rows = []
    for method, trainable in (("full", total), ("lora", lora)):
        for precision, act_bytes in (("fp32", 4), ("bf16 autocast", 2)):
            rows.append(MemoryRow(
                setting=f"{method} · {precision}",
                trainable=trainable,
                weights=total * 4,
                gradients=trainable * 4,
                optimizer=trainable * 8,
                activations=activation_bytes(shape, batch, seq, act_bytes, checkpointing, causal_lm),
            ))
    return rows


@dataclass
class Estimate:
    model: str
    family: str
    parameters: int
    lora_trainable: int
    lora_targets: list[str]
    shape: Shape
    batch: int
    seq: int
    seq_note: str
    checkpointing: bool
    rows: list[MemoryRow]


def _sequence_length(recipe: Any, shape: Shape, resolved: Any) -> tuple[int, str, int | None]:
    """The length the run will train at, why, and the training rows when they were read: training.max_length, or
    for ``auto`` the one the run picks from the training data (:func:`run_max_length`); only without data.train
    the model's limit, capped at 512."""
    if recipe.training.max_length != "auto":
        return int(recipe.training.max_length), "training.max_length", None
    picked = run_max_length(recipe, resolved)
    if picked is not None:
        return picked
    seq = min(shape.max_positions, 512)
    return seq, (f"max_length auto without a data.train file here: assumed {seq} (the model's limit, capped at "
                 "512); set data.train or training.max_length to estimate exactly"), None


def run_max_length(recipe: Any, resolved: Any) -> tuple[int, str, int] | None:
    """``max_length: auto`` as the run resolves it: the task reads, cleans and encodes the training data with the
    model's tokenizer (nothing is written) and keeps the length its ``encode`` picks (the 99th percentile of the
    training lengths, rounded up to 8, within the model's limit). With the training rows; None without a
    data.train file."""
    if not recipe.data.train or not Path(recipe.data.train).expanduser().is_file():
        return None
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.tasks import get_task

    task = get_task(recipe.task)
    tokenizer = load_tokenizer(resolved, recipe.model)
    data = task.prepare_data(recipe, lambda texts: [len(ids) for ids in tokenizer(list(texts),
                                                                                  truncation=False)["input_ids"]])
    seq = task.encode(recipe, data, tokenizer).max_length
    rows = len(data.train)
    return seq, f"max_length auto: {seq}, as the run picks it from the {rows} training rows (their p99 length)", rows


def head_config(recipe: Any, spec: Any, config: Any) -> Any:
    """A head over a closed label set (a task ``spec`` with ``labels``: classification, token tags) needs its
    label count; the recipe's labels when given, else 2."""
    if spec.has("labels"):
        config.num_labels = len(recipe.data.labels) if recipe.data.labels else max(2, config.num_labels)
    return config


def estimate_recipe(recipe: Any) -> Estimate:
    """Parameter counts and memory per process of a recipe's model, from its config (no weights loaded)."""
    from transformers import AutoConfig

    from tailorlm.errors import ModelError
    from tailorlm.models.loading import load_pretrained
    from tailorlm.models.peft import choose_targets
    from tailorlm.models.registry import resolve_model
    from tailorlm.tasks import get_spec
    from tailorlm.train.auto import choose_batch_size, nominal

    spec = get_spec(recipe.task)
    recipe.model.name = spec.model_name(recipe.model.name)
    resolved = resolve_model(recipe.model.name, allow_pickle=recipe.model.allow_pickle)
    config = head_config(recipe, spec, load_pretrained(AutoConfig, resolved, recipe.model))
    model = meta_model(spec.auto_class(), config)
    total = sum(p.numel() for p in model.parameters())
    try:
        targets = choose_targets(model, recipe.model.peft)
    except ModelError:  # no LoRA default for this family: the LoRA rows then count the head only
        targets = []
    lora = lora_trainable(model, targets, recipe.model.peft.r, HEAD_NAMES)
    shape = config_shape(config)
    seq, note, n_train = _sequence_length(recipe, shape, resolved)
    checkpointing = recipe.training.gradient_checkpointing
    batch = nominal(recipe).training.batch_size  # batch_size: auto needs the data; without it, its stand-in
    if n_train is not None and recipe.training.batch_size == "auto":
        batch = choose_batch_size(n_train).value  # as the run picks it (train/auto.py)
    rows = memory_rows(total, lora, shape, batch, seq, checkpointing, causal_lm=spec.peft_task_type == "CAUSAL_LM")
    return Estimate(recipe.model.name, getattr(config, "model_type", "?"), total, lora, targets, shape,
                    batch, seq, note, checkpointing, rows)
