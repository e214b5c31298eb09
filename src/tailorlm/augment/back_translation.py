"""``augment.method: back_translation``: each text translated to a pivot language and back (Sennrich et al. 2016;
Xie et al. 2020's UDA used it for classification).

The two seq2seq models are ``augment.back_translation.forward`` and ``.backward`` (hub ids online, local folders
offline, e.g. Helsinki-NLP/opus-mt-en-de and opus-mt-de-en), loaded through tailorlm's safe loader. Generation is
transformers' ``generate`` on ``augment.batch_size`` texts at a time with the section's decoding settings
(sampling by default: varied copies; ``do_sample: false`` and ``num_beams`` for the most likely translation), seeded
from the stage's random generator. Our own few lines rather than nlpaug's BackTranslationAug, which wraps the same
calls but loads models its own way.
"""

from __future__ import annotations

import random
from typing import Any

from tailorlm.augment.base import Augmenter, Sources, generate_texts, load_named, load_named_tokenizer, resolve_named
from tailorlm.errors import ModelError
from tailorlm.recipe import BackTranslationConfig

KEY = "augment.back_translation"


class BackTranslator(Augmenter):
    name = "back_translation"

    def __init__(self, forward: tuple[Any, Any], backward: tuple[Any, Any], names: dict[str, str],
                 cfg: BackTranslationConfig, batch_size: int) -> None:
        super().__init__()
        self.forward, self.backward, self.names = forward, backward, names
        self.cfg, self.batch_size = cfg, batch_size

    def candidates(self, texts: list[str], rng: random.Random) -> list[str | None]:
        seed = rng.randrange(2**31)
        pivots = generate_texts(*self.forward, texts, self.cfg, self.batch_size, seed)
        keep = [i for i, pivot in enumerate(pivots) if pivot]
        self.dropped["empty_pivot"] += len(texts) - len(keep)
        back = generate_texts(*self.backward, [pivots[i] for i in keep], self.cfg, self.batch_size, seed + 1)
        out: list[str | None] = [None] * len(texts)
        for i, text in zip(keep, back, strict=True):
            out[i] = text or None
            self.dropped["empty"] += not text
        return out

    def record(self) -> dict[str, Any]:
        settings = self.cfg.model_dump(exclude={"forward", "backward"})
        return {"models": self.names, "decoding": settings, "dropped_empty_pivot": self.dropped["empty_pivot"],
                "dropped_empty": self.dropped["empty"]}


def load_seq2seq(name: str, key: str, sources: Sources) -> tuple[Any, Any]:
    """A seq2seq model and its tokenizer; a model of another kind is one line naming ``key``."""
    from transformers import AutoModelForSeq2SeqLM

    resolved = resolve_named(name, key, sources.recipe)
    try:
        model = load_named(AutoModelForSeq2SeqLM, resolved, sources.recipe, key)
    except ModelError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise ModelError(f"{name}: not a seq2seq (encoder-decoder) model ({key}); name a translation model "
                             "such as Helsinki-NLP/opus-mt-en-de") from None
        raise
    return model, load_named_tokenizer(resolved, sources.recipe, key)


def build(sources: Sources) -> BackTranslator:
    cfg = sources.recipe.augment.back_translation
    assert cfg.forward and cfg.backward  # the recipe refuses back_translation without both
    forward = load_seq2seq(cfg.forward, f"{KEY}.forward", sources)
    backward = load_seq2seq(cfg.backward, f"{KEY}.backward", sources)
    return BackTranslator(forward, backward, {"forward": cfg.forward, "backward": cfg.backward}, cfg,
                          sources.recipe.augment.batch_size)
