"""``augment.method: paraphrase``: a causal LM rewrites each training row in the target domain's style.

The generator is ``augment.generator`` (default the shipped ``smollm2``, SmolLM2-135M-Instruct), prompted through
its chat template with up to ``augment.paraphrase.examples`` texts drawn (seeded) from ``adapt.target_unlabeled``
when it is set (read and leak-checked as the target stage reads it) and the source row, and asked for a rewrite that
keeps the meaning. A rewrite is kept when its length in words is within ``min_length_ratio``..``max_length_ratio``
of the source row's and its similarity to the row is at least ``min_similarity``: the cosine of mean-pooled
sentence embeddings from the run's model (``similarity: embedding``) or the Jaccard overlap of their words
(``overlap``); each filter's drops are counted. The copy keeps the source row's label (the stage copies the row).
Generation is transformers' ``generate``, left-padded batches of ``augment.batch_size`` prompts, seeded.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from tailorlm.augment.base import (
    Augmenter,
    Sources,
    batches,
    generate_texts,
    input_limit,
    load_named,
    load_named_tokenizer,
    resolve_named,
)
from tailorlm.errors import ModelError
from tailorlm.recipe import ParaphraseConfig

KEY = "augment.generator"
SYSTEM = "You rewrite short texts. Keep the meaning and the sentiment; change the wording."
#: words of a target example shown in a prompt (long examples would crowd out the row itself)
EXAMPLE_WORDS = 60
Similarity = Callable[[list[str], list[str]], list[float]]
#: a label a small model puts before its answer, echoing the prompt ("Text: ...", "Rewrite: ...")
LABEL = re.compile(r"^(text|rewrite|rewritten text|paraphrase)\s*:\s*", re.IGNORECASE)


def words_of(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def overlap(sources: list[str], rewrites: list[str]) -> list[float]:
    """The Jaccard overlap of each pair's word sets."""
    scores = []
    for a, b in zip(map(words_of, sources), map(words_of, rewrites), strict=True):
        scores.append(len(a & b) / len(a | b) if a | b else 1.0)
    return scores


def first_line(text: str) -> str:
    """The rewrite: its first line that is not a preamble ("Here is the rewrite:"), without a "Text:" label or
    wrapping quotes."""
    lines = [part.strip() for part in text.splitlines() if part.strip()]
    line = next((part for part in lines if not part.endswith(":")), "")
    return LABEL.sub("", line).strip("\"'` ").strip()


class Paraphraser(Augmenter):
    name = "paraphrase"

    def __init__(self, generator: tuple[Any, Any], names: dict[str, str | None], cfg: ParaphraseConfig,
                 examples: list[str], similarity: Similarity, batch_size: int) -> None:
        super().__init__()
        self.generator, self.names, self.cfg = generator, names, cfg
        self.examples, self.similarity, self.batch_size = examples, similarity, batch_size

    def prompt(self, text: str, rng: random.Random) -> str:
        shown = rng.sample(self.examples, min(self.cfg.examples, len(self.examples)))
        ask = "Rewrite the text below, keeping its meaning"
        if shown:
            lines = "\n".join(f"- {' '.join(example.split()[:EXAMPLE_WORDS])}" for example in shown)
            ask = f"Texts in the target style:\n{lines}\n\n{ask}, in the style of those texts"
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"{ask}. Reply with the rewrite only.\n\nText: {text}"}]
        return self.generator[1].apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def candidates(self, texts: list[str], rng: random.Random) -> list[str | None]:
        prompts = [self.prompt(text, rng) for text in texts]
        rewrites = [first_line(out) for out in generate_texts(*self.generator, prompts, self.cfg, self.batch_size,
                                                              rng.randrange(2**31), decoder_only=True)]
        out: list[str | None] = [None] * len(texts)
        sized = [i for i in range(len(texts)) if self.length_ok(texts[i], rewrites[i])]
        self.dropped["length"] += len(texts) - len(sized)
        scores = self.similarity([texts[i] for i in sized], [rewrites[i] for i in sized]) if sized else []
        for i, score in zip(sized, scores, strict=True):
            if score >= self.cfg.min_similarity:
                out[i] = rewrites[i]
            else:
                self.dropped["similarity"] += 1
        return out

    def length_ok(self, source: str, rewrite: str) -> bool:
        n, m = len(source.split()), len(rewrite.split())
        return m > 0 and self.cfg.min_length_ratio * n <= m <= self.cfg.max_length_ratio * n

    def record(self) -> dict[str, Any]:
        return {"models": self.names, "target_examples": len(self.examples),
                "settings": self.cfg.model_dump(), "dropped_length": self.dropped["length"],
                "dropped_similarity": self.dropped["similarity"]}


def embedding_similarity(sources: Sources) -> Similarity:
    """Cosine of mean-pooled last hidden states of the run's model (its body without a task head)."""
    import torch
    from transformers import AutoModel

    key = "model.name"
    model = load_named(AutoModel, sources.model, sources.recipe, key)
    tokenizer = load_named_tokenizer(sources.model, sources.recipe, key)
    device = next(model.parameters()).device

    def embed(texts: list[str]) -> Any:
        vectors = []
        for batch in batches(texts, sources.recipe.augment.batch_size):
            encoded = tokenizer(batch, return_tensors="pt", padding=True, truncation=True,
                                max_length=input_limit(tokenizer)).to(device)
            with torch.no_grad():
                hidden = model(**encoded).last_hidden_state
            weights = encoded["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            vectors.append((hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0))
        return torch.nn.functional.normalize(torch.cat(vectors).float(), dim=-1)

    def similarity(a: list[str], b: list[str]) -> list[float]:
        return (embed(a) * embed(b)).sum(-1).tolist()

    return similarity


def target_examples(sources: Sources) -> list[str]:
    """adapt.target_unlabeled's texts, leak-checked like the target stage's; none when it is not set."""
    if not sources.recipe.adapt.target_unlabeled or not sources.recipe.augment.paraphrase.examples:
        return []
    from tailorlm.adapt.target import read_target

    return read_target(sources.recipe, sources.data).texts


def build(sources: Sources) -> Paraphraser:
    from transformers import AutoModelForCausalLM

    recipe = sources.recipe
    cfg = recipe.augment.paraphrase
    resolved = resolve_named(recipe.augment.generator, KEY, recipe)
    try:
        model = load_named(AutoModelForCausalLM, resolved, recipe, KEY)
    except ModelError as exc:
        if "Unrecognized configuration class" in str(exc):
            raise ModelError(f"{resolved.name}: not a causal LM ({KEY}); name an instruct model with a chat "
                             "template, e.g. smollm2") from None
        raise
    tokenizer = load_named_tokenizer(resolved, recipe, KEY)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"{resolved.name}: its tokenizer has no chat template ({KEY}); name an instruct model, "
                         "e.g. smollm2")
    tokenizer.padding_side = "left"  # generation continues each prompt from its last token
    similarity = embedding_similarity(sources) if cfg.similarity == "embedding" else overlap
    names = {"generator": recipe.augment.generator,
             "similarity": sources.model.name if cfg.similarity == "embedding" else None}
    return Paraphraser((model, tokenizer), names, cfg, target_examples(sources), similarity,
                       recipe.augment.batch_size)
