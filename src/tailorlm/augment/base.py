"""What every augmentation method is to the stage: texts in, one candidate text per text out.

The stage (stage.py) owns the leak checks, the cap, the tagging and the seeded row order; a method only proposes
a rewrite of each text it is given (or None when it has none) and counts what its own filters dropped. Methods
that run a model load it here, through tailorlm's safe loader (models/loading.py: safetensors unless
``model.allow_pickle``, a folder shipping its own code refused), with one-line errors naming the recipe key the
model came from. Generation is transformers' ``generate`` in batches: nlpaug (which wraps the same calls) is not a
dependency, and a few lines keep the seeds and the safe loading ours.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import ModelError
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import AugmentDecoding, ModelConfig, Recipe


class Augmenter(ABC):
    """One augmentation method. ``dropped`` counts the candidates its own filters removed, by filter name."""

    name: str = ""

    def __init__(self) -> None:
        self.dropped: Counter[str] = Counter()
        self.operations: Counter[str] = Counter()

    @abstractmethod
    def candidates(self, texts: list[str], rng: random.Random) -> list[str | None]:
        """One candidate rewrite per text (None: this text has none this time), in the same order."""

    def record(self) -> dict[str, Any]:
        """What metrics.json's ``augment`` section says about this method: its models, settings and drops."""
        return {}


@dataclass(frozen=True)
class Sources:
    """What a method may build itself from: the recipe, the prepared splits, and the run's model as it will be
    fine-tuned (``adapted/`` when adapt.pretrain ran, else ``model.name``)."""

    recipe: Recipe
    data: PreparedData
    model: ResolvedModel


def _with_key(exc: ModelError, key: str) -> ModelError:
    message = str(exc).replace("(model.name)", f"({key})").replace("check model.name", f"check {key}")
    return ModelError(message if key in message else f"{message} ({key})")


def resolve_named(name: str, key: str, recipe: Recipe) -> ResolvedModel:
    """A model a recipe key names (alias, folder, hub id), with the key in any error."""
    from tailorlm.models.registry import resolve_model

    try:
        return resolve_model(name, allow_pickle=recipe.model.allow_pickle)
    except ModelError as exc:
        raise _with_key(exc, key) from None


def safety(recipe: Recipe) -> ModelConfig:
    """The loading settings of an augmentation model: the run's pickle choice, never remote code or a revision
    (those belong to ``model.name``)."""
    return ModelConfig(allow_pickle=recipe.model.allow_pickle)


def load_named(factory: Any, resolved: ResolvedModel, recipe: Recipe, key: str, **kwargs: Any) -> Any:
    """``factory.from_pretrained`` through models/loading.py, errors naming ``key``; moved to the GPU if any."""
    import torch

    from tailorlm.models.loading import load_pretrained

    try:
        loaded = load_pretrained(factory, resolved, safety(recipe), what=key, **kwargs)
    except ModelError as exc:
        raise _with_key(exc, key) from None
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return loaded


def load_named_tokenizer(resolved: ResolvedModel, recipe: Recipe, key: str) -> Any:
    from tailorlm.models.loading import load_tokenizer

    try:
        return load_tokenizer(resolved, safety(recipe))
    except ModelError as exc:
        raise _with_key(exc, key) from None


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def input_limit(tokenizer: Any, cap: int = 512) -> int:
    """The longest input to encode: the tokenizer's limit (often a huge sentinel), at most ``cap``."""
    limit = getattr(tokenizer, "model_max_length", cap) or cap
    return int(min(limit, cap))


def generate_texts(model: Any, tokenizer: Any, prompts: list[str], decoding: AugmentDecoding, batch_size: int,
                   seed: int, *, decoder_only: bool = False) -> list[str]:
    """``model.generate`` over ``prompts`` in batches, decoded without special tokens; a decoder-only model's
    prompt is cut off its output. The sampling seed is ``seed``; the global torch RNG is left as it was."""
    import torch

    options: dict[str, Any] = {"max_new_tokens": decoding.max_new_tokens, "num_beams": decoding.num_beams,
                               "do_sample": decoding.do_sample, "pad_token_id": tokenizer.pad_token_id}
    if decoding.do_sample:
        options |= {"temperature": decoding.temperature, "top_p": decoding.top_p}
    device = next(model.parameters()).device
    out: list[str] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        torch.manual_seed(seed)
        for batch in batches(prompts, batch_size):
            encoded = tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                                max_length=input_limit(tokenizer), add_special_tokens=not decoder_only)
            encoded = {k: v.to(device) for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
            generated = model.generate(**encoded, **options)
            if decoder_only:
                generated = generated[:, encoded["input_ids"].shape[1]:]
            out += [text.strip() for text in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    return out
