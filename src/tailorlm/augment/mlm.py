"""``augment.method: mlm``: contextual word substitution by a masked language model (Kobayashi 2018; Wu et al.
2019 without the label conditioning).

``augment.alpha`` of a text's words (at least one, words with a letter or digit) are each replaced by one mask
token, all of a text's masks are filled in one forward pass, and each filled word is drawn (seeded) from the
model's ``augment.top_k`` whole-word tokens other than the original word, in proportion to their probability.
Texts go through the model ``augment.batch_size`` at a time. Our own few lines on transformers'
``AutoModelForMaskedLM`` rather than nlpaug's ContextualWordEmbsAug (not a dependency; the same idea), so loading
stays tailorlm's safe loader. The model is ``augment.mlm_model`` or the run's model (its ``adapted/`` copy when
adapt.pretrain ran, whose masked-LM head DAPT trained); a model whose checkpoint has no masked-LM head (a
sentence encoder such as all-MiniLM-L6-v2) would fill masks at random and is refused.
"""

from __future__ import annotations

import random
from typing import Any

from tailorlm.augment.base import (
    Augmenter,
    Sources,
    batches,
    input_limit,
    load_named,
    load_named_tokenizer,
    resolve_named,
)
from tailorlm.augment.eda import edit_count
from tailorlm.errors import ModelError

KEY = "augment.mlm_model"
#: candidates looked at per mask before the top k whole words are kept (sub-word pieces and specials skipped)
POOL = 50


class MaskedLMAugmenter(Augmenter):
    name = "mlm"

    def __init__(self, model: Any, tokenizer: Any, model_name: str, alpha: float, top_k: int, batch_size: int) -> None:
        super().__init__()
        self.model, self.tokenizer, self.model_name = model, tokenizer, model_name
        self.alpha, self.top_k, self.batch_size = alpha, top_k, batch_size
        self.special = set(tokenizer.all_special_ids)

    def candidates(self, texts: list[str], rng: random.Random) -> list[str | None]:
        plans = [self.plan(text.split(), rng) for text in texts]
        out: list[str | None] = []
        for batch in batches(plans, self.batch_size):
            out += self.fill(batch, rng)
        return out

    def plan(self, words: list[str], rng: random.Random) -> tuple[list[str], list[int]]:
        """The words and the sorted positions to mask."""
        eligible = [i for i, word in enumerate(words) if any(c.isalnum() for c in word)]
        n = min(len(eligible), edit_count(len(words), self.alpha))
        return words, sorted(rng.sample(eligible, n))

    def fill(self, plans: list[tuple[list[str], list[int]]], rng: random.Random) -> list[str | None]:
        """One forward pass for a batch of masked texts; each mask drawn from its top-k words."""
        import torch

        mask = self.tokenizer.mask_token
        masked = [" ".join(mask if i in positions else w for i, w in enumerate(words)) for words, positions in plans]
        encoded = self.tokenizer(masked, return_tensors="pt", padding=True, truncation=True,
                                 max_length=input_limit(self.tokenizer))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            logits = self.model(**{k: v.to(device) for k, v in encoded.items()}).logits
        out: list[str | None] = []
        for row, (words, positions) in enumerate(plans):
            found = (encoded["input_ids"][row] == self.tokenizer.mask_token_id).nonzero().flatten().tolist()
            new = list(words)
            for slot, index in zip(positions, found, strict=False):  # truncation may have cut later masks
                self.operations["masked"] += 1
                word = self.draw(logits[row, index].float().softmax(-1), words[slot], rng)
                if word is not None:
                    new[slot] = word
                    self.operations["replaced"] += 1
            out.append(" ".join(new) if positions else None)
        return out

    def draw(self, probs: Any, original: str, rng: random.Random) -> str | None:
        """A whole word from the top k (not a special token, a sub-word piece or the original), or None."""
        top = probs.topk(min(POOL, probs.shape[-1]))
        options: list[tuple[str, float]] = []
        for p, token_id in zip(top.values.tolist(), top.indices.tolist(), strict=True):
            token = self.tokenizer.convert_ids_to_tokens(token_id)
            word = self.tokenizer.convert_tokens_to_string([token]).strip()
            reserved = token.startswith("[") and token.endswith("]")  # BERT's [unused12] and the like
            if token_id in self.special or reserved or token.startswith("##") or not any(c.isalnum() for c in word) \
                    or word.lower() == original.lower():
                continue
            options.append((word, p))
            if len(options) == self.top_k:
                break
        if not options:
            return None
        return rng.choices([w for w, _ in options], weights=[max(p, 1e-12) for _, p in options])[0]

    def record(self) -> dict[str, Any]:
        return {"models": {"mlm": self.model_name}, "top_k": self.top_k}


def no_head(name: str) -> ModelError:
    return ModelError(f"{name}: has no masked-LM head ({KEY}); set {KEY} to a model with one (e.g. "
                      "bert-base-uncased, or a folder saved from a *ForMaskedLM), turn on adapt.pretrain to train "
                      "the run's model one, or use augment.method: eda")


def build(sources: Sources) -> MaskedLMAugmenter:
    """The masked-LM augmenter; refuses a model that has no trained masked-LM head, naming ``augment.mlm_model``."""
    from transformers import AutoModelForMaskedLM

    recipe = sources.recipe
    cfg = recipe.augment
    resolved = resolve_named(cfg.mlm_model, KEY, recipe) if cfg.mlm_model else sources.model
    try:
        model, info = load_named(AutoModelForMaskedLM, resolved, recipe, KEY, output_loading_info=True)
    except ModelError as exc:
        if "Unrecognized configuration class" in str(exc) or "masked" in str(exc).lower():
            raise no_head(resolved.name) from None
        raise
    if info.get("missing_keys"):  # a head drawn at random would fill masks with noise
        raise no_head(resolved.name)
    tokenizer = load_named_tokenizer(resolved, recipe, KEY)
    if tokenizer.mask_token_id is None:
        raise ModelError(f"{resolved.name}: its tokenizer has no mask token ({KEY}); use a masked-LM's folder")
    return MaskedLMAugmenter(model, tokenizer, resolved.name, cfg.alpha, cfg.top_k, cfg.batch_size)
