"""Causal-LM supervised fine-tuning (``task: generation``): teach a decoder to answer in a team's own voice.

Data: prompt/response pairs, chat ``messages``, or plain domain text (see :mod:`tailorlm.tasks.generation.data`).

Formatting: the tokenizer's chat template when it has one and ``lm.chat_template`` is ``auto`` (the user turn is
the prompt, the assistant turn the response; earlier chat turns are context), otherwise :data:`PLAIN_TEMPLATE`::

    ### Instruction:
    {prompt}

    ### Response:
    {response}<eos>

The prompt part and the response part are tokenized separately and concatenated, so the prompt ids seen in
training are exactly the ids a generation starts from. Plain text has no prompt: all its tokens are learned, and
its before/after samples continue a held-out text: the first :data:`TEXT_PROMPT_TOKENS` tokens (at most half of
it) are the prompt, the rest is the reference (:func:`sample_prompt`).

Loss: on the response tokens only (``lm.loss_on: response``; prompt labels are -100), or on every token
(``all``). Perplexity on the test split (exp of the mean loss over response tokens) is measured by one function
for the pretrained model (baseline ``pretrained``) and the tuned one, and a few held-out prompts are answered by
both (greedy by default, ``generation.*``), side by side in metrics.json's ``samples``.

Packing (``lm.packing``): examples are concatenated into rows of at most ``max_length`` tokens with position ids
restarting at 0 for each example, and a batch is flattened into one row without an attention mask; transformers'
masking utilities then see the restarts and build a block-diagonal causal mask (sdpa/eager; flash-attention reads
the same position ids), so no example attends to another. transformers' ``DataCollatorWithFlattening`` does the
same flattening but recomputes position ids per feature, which would merge the examples of one packed row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from tailorlm.data.pipeline import PreparedData, prepare, require_test
from tailorlm.errors import DataError, ModelError
from tailorlm.models.loading import load_pretrained
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import DataConfig, GenerationSettings, Recipe
from tailorlm.tasks.base import EncodedSplits, EvalSettings, Task
from tailorlm.tasks.common import model_token_limit, set_dropout
from tailorlm.tasks.generation.data import GenerationRows, load_generation_file
from tailorlm.tasks.generation.spec import SPEC
from tailorlm.train.lm_loss import accepts_logits_to_keep, labelled_token_loss

if TYPE_CHECKING:
    from tailorlm.models.saved import LoadedModel

IGNORE = -100
#: how many leading tokens of a held-out plain text a before/after sample continues (at most half the text)
TEXT_PROMPT_TOKENS = 32
PLAIN_TEMPLATE = "### Instruction:\n{prompt}\n\n### Response:\n"
_PLAIN_ROLES = {"system": "### System:\n", "user": "### Instruction:\n", "assistant": "### Response:\n"}


# ---------------------------------------------------------------------------------------------- formatting


@dataclass(frozen=True)
class Example:
    """One training example as text: ``context`` is earlier chat turns (JSON) or ""; ``kind`` pair/chat/text."""

    prompt: str
    response: str
    context: str = ""
    kind: str = "pair"


def uses_chat_template(tokenizer: PreTrainedTokenizerBase, setting: str = "auto") -> bool:
    """The tokenizer's own chat template is the format the model was instruction-tuned with: use it if any."""
    return setting == "auto" and bool(getattr(tokenizer, "chat_template", None))


def _turns(example: Example) -> list[dict[str, str]]:
    return json.loads(example.context) if example.context else [{"role": "user", "content": example.prompt}]


def prompt_text(tokenizer: PreTrainedTokenizerBase, example: Example, chat: bool) -> str:
    """The text a generation starts from (chat template with the generation prompt, or the plain template)."""
    if example.kind == "text":
        return ""
    turns = _turns(example)
    if chat:
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    earlier = "".join(f"{_PLAIN_ROLES[t['role']]}{t['content']}\n\n" for t in turns[:-1])
    return earlier + PLAIN_TEMPLATE.format(prompt=turns[-1]["content"])


def response_text(tokenizer: PreTrainedTokenizerBase, example: Example, chat: bool, prompt: str) -> str:
    """What follows the prompt: the template's assistant turn (with its end marker), else response + EOS."""
    eos = tokenizer.eos_token or ""
    if chat and example.kind != "text":
        turns = [*_turns(example), {"role": "assistant", "content": example.response}]
        full = tokenizer.apply_chat_template(turns, tokenize=False)
        if full.startswith(prompt):
            return full[len(prompt):]
    return example.response + eos


def prompt_ids(tokenizer: PreTrainedTokenizerBase, example: Example, chat: bool) -> list[int]:
    """Token ids of the prompt part; the plain template adds the tokenizer's own BOS, the chat template has it."""
    text = prompt_text(tokenizer, example, chat)
    return list(tokenizer(text, add_special_tokens=not chat or example.kind == "text")["input_ids"])


@dataclass(frozen=True)
class SamplePrompt:
    """What a before/after sample starts from (``ids``), shown as ``prompt``, and the text it should produce."""

    ids: list[int]
    prompt: str
    reference: str


def sample_prompt(tokenizer: PreTrainedTokenizerBase, example: Example, chat: bool) -> SamplePrompt:
    """A prompt/response or chat row is answered; a plain text (no prompt) is continued from its first tokens.

    Plain text: the first :data:`TEXT_PROMPT_TOKENS` tokens, or half the text when shorter, so that the model
    always has something to continue and the reference is never empty.
    """
    if example.kind != "text":
        return SamplePrompt(prompt_ids(tokenizer, example, chat), example.prompt, example.response)
    ids = list(tokenizer(example.response, add_special_tokens=True)["input_ids"])
    special = set(tokenizer.all_special_ids)
    content = [i for i, token in enumerate(ids) if token not in special]
    if not content:  # nothing but special tokens: start from them, there is nothing to show
        return SamplePrompt(ids or [_pad_id(tokenizer)], "", example.response)
    keep = min(TEXT_PROMPT_TOKENS, max(1, len(content) // 2))
    cut = content[keep - 1] + 1
    return SamplePrompt(ids[:cut], tokenizer.decode(ids[:cut], skip_special_tokens=True),
                        tokenizer.decode(ids[cut:], skip_special_tokens=True).strip())


def encode_example(
    tokenizer: PreTrainedTokenizerBase, example: Example, chat: bool, loss_on: str, max_length: int
) -> dict[str, list[int]]:
    """input_ids and labels (-100 over the prompt unless ``loss_on == "all"``), cut to ``max_length``.

    When too long, the response keeps at least half the budget (its end is cut), then the prompt loses its
    beginning: the end of a prompt, next to the answer, matters most.
    """
    prompt = prompt_text(tokenizer, example, chat)
    p_ids = prompt_ids(tokenizer, example, chat)
    r_ids = list(tokenizer(response_text(tokenizer, example, chat, prompt), add_special_tokens=False)["input_ids"])
    if len(p_ids) + len(r_ids) > max_length:
        r_ids = r_ids[: max(max_length - len(p_ids), max_length // 2)]
        p_ids = p_ids[len(p_ids) - (max_length - len(r_ids)):] if max_length > len(r_ids) else []
    mask_prompt = loss_on == "response" and example.kind != "text"
    labels = ([IGNORE] * len(p_ids) if mask_prompt else list(p_ids)) + r_ids
    return {"input_ids": p_ids + r_ids, "labels": labels}


def examples_of(frame: pd.DataFrame) -> list[Example]:
    return [Example(p, r, c, k) for p, r, c, k in
            zip(frame["prompt"], frame["response"], frame["context"], frame["kind"], strict=True)]


# ---------------------------------------------------------------------------------------------- packing, batches


def pack_examples(encoded: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Concatenate examples, in order, into rows of at most ``max_length`` tokens; position ids restart per example.

    The first label of every example is -100: in a packed row it would be predicted from the previous example.
    """
    packs: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for item in encoded:
        ids = item["input_ids"][:max_length]
        if current["input_ids"] and len(current["input_ids"]) + len(ids) > max_length:
            packs.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += ids
        current["labels"] += [IGNORE, *item["labels"][1 : len(ids)]]
        current["position_ids"] += list(range(len(ids)))
    if current["input_ids"]:
        packs.append(current)
    return packs


class CausalLMCollator:
    """Right-pads input_ids (pad id), attention_mask (0) and labels (-100) to the longest in the batch."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in features)
        ids, mask, labels = [], [], []
        for f in features:
            gap = longest - len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * gap)
            mask.append([1] * len(f["input_ids"]) + [0] * gap)
            labels.append(list(f["labels"]) + [IGNORE] * gap)
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels)}


class PackedCollator:
    """Flattens a batch of packed rows into one row, keeping their position ids and passing no attention mask.

    With position ids that restart and no mask, transformers builds a causal mask that stays inside each example;
    it only looks for restarts without a KV cache, hence ``use_cache=False`` (training needs no cache anyway).
    """

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        flat = {key: [x for f in features for x in f[key]] for key in ("input_ids", "labels", "position_ids")}
        return {key: torch.tensor([values]) for key, values in flat.items()} | {"use_cache": False}


def _dataset(rows: list[dict[str, list[int]]]) -> Dataset:
    columns: dict[str, list[Any]] = {key: [r[key] for r in rows] for key in rows[0]} if rows else {}
    columns["length"] = [len(r["input_ids"]) for r in rows]
    return Dataset.from_dict(columns)


# ---------------------------------------------------------------------------------------------- metrics


@torch.no_grad()
def token_nll(model: PreTrainedModel, encoded: list[dict[str, list[int]]], batch_size: int, pad_token_id: int
              ) -> tuple[float, int]:
    """(sum of the negative log-likelihood over labelled tokens, their count), batched by sorted length.

    Only the labelled tokens' logits are computed, and in chunks (train/lm_loss.py), where the model takes
    ``logits_to_keep``: the batch's fp32 logits over the whole vocabulary are never materialised.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    collate = CausalLMCollator(pad_token_id)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]["input_ids"]))
    selected = accepts_logits_to_keep(model)
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = collate([encoded[i] for i in order[start : start + batch_size]])
        labels = batch.pop("labels").to(device)
        inputs = {k: v.to(device) for k, v in batch.items()}
        if selected:
            loss, n, _ = labelled_token_loss(model, inputs, labels)
        else:
            logits = model(**inputs).logits.float()
            shifted = labels[:, 1:]
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     shifted.reshape(-1), ignore_index=IGNORE, reduction="sum")
            n = int((shifted != IGNORE).sum())
        total += float(loss)
        count += n
    model.train(was_training)
    return total, count


def perplexity(model: PreTrainedModel, encoded: list[dict[str, list[int]]], batch_size: int = 16,
               pad_token_id: int = 0) -> dict[str, float]:
    """exp(mean token loss) over the labelled (response) tokens: the same function before and after tuning."""
    total, count = token_nll(model, encoded, batch_size, pad_token_id)
    loss = total / count if count else float("nan")
    return {"perplexity": float(math.exp(min(loss, 50.0))), "loss": float(loss), "n": float(len(encoded)),
            "tokens": float(count)}


@torch.no_grad()
def generate_text(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ids: list[int],
                  settings: GenerationSettings, max_new_tokens: int | None = None) -> str:
    """One completion of ``ids`` (greedy unless ``settings.do_sample``), special tokens removed."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    inputs = torch.tensor([ids], device=device)
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens or settings.max_new_tokens,
        "num_beams": settings.num_beams,
        "do_sample": settings.do_sample,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    }
    if settings.do_sample:
        options |= {"temperature": settings.temperature, "top_p": settings.top_p}
    else:
        options |= {"temperature": None, "top_p": None, "top_k": None}
    output = model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), **options)
    model.train(was_training)
    return tokenizer.decode(output[0, len(ids):], skip_special_tokens=True).strip()


# ---------------------------------------------------------------------------------------------- the task


class GenerationTask(Task):
    spec = SPEC
    input_fields = ("prompt",)

    def __init__(self) -> None:
        # One task object lives through one run: what encode decided and what baselines generated are kept
        # here so that evaluate (whose signature is shared with `tailor eval`) can use them.
        self._recipe: Recipe | None = None
        self._chat: bool | None = None
        self._before_samples: list[str] | None = None
        self._pad_token_id: int = 0

    # ------------------------------------------------------------------ data
    def prepare_data(self, recipe: Recipe, count_tokens: Callable[[list[str]], list[int]] | None) -> PreparedData:
        self._recipe = recipe
        data = prepare(recipe.data, GenerationRows(), count_tokens)
        require_test(data, recipe.data, "rows")
        return data

    def _setup(self, recipe: Recipe, tokenizer: PreTrainedTokenizerBase) -> bool:
        self._recipe = recipe
        self._chat = uses_chat_template(tokenizer, recipe.lm.chat_template)
        self._pad_token_id = _pad_id(tokenizer)
        return self._chat

    def encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        chat = self._setup(recipe, tokenizer)
        loss_on = recipe.lm.loss_on
        limit = model_token_limit(tokenizer)
        full = [encode_example(tokenizer, ex, chat, loss_on, limit) for ex in examples_of(data.train)]
        max_length = _resolve_max_length(recipe, [len(e["input_ids"]) for e in full], limit)
        train = [encode_example(tokenizer, ex, chat, loss_on, max_length) for ex in examples_of(data.train)]
        validation = [encode_example(tokenizer, ex, chat, loss_on, max_length) for ex in examples_of(data.validation)]
        truncated = sum(len(e["input_ids"]) > max_length for e in full)
        stats = {"prompt_format": "chat" if chat else "plain", "loss_on": loss_on, "truncated_train": truncated,
                 "packing": recipe.lm.packing}
        if recipe.lm.packing:
            train = pack_examples(train, max_length)
            validation = pack_examples(validation, max_length)
            stats["packed_rows"] = len(train)
        return EncodedSplits(train=_dataset(train), validation=_dataset(validation) if validation else None,
                             max_length=max_length, stats=stats)

    def after_encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase,
                     encoded: EncodedSplits) -> None:
        self._setup(recipe, tokenizer)  # the collator and evaluation read the prompt format and packing

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        if self._recipe is not None and self._recipe.lm.packing:
            return PackedCollator()
        return CausalLMCollator(_pad_id(tokenizer))

    # ------------------------------------------------------------------ model
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> PreTrainedModel:
        config = load_pretrained(AutoConfig, resolved, recipe.model)
        set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
        return load_pretrained(AutoModelForCausalLM, resolved, recipe.model, config=config)

    def model_meta(self, data: PreparedData) -> dict[str, Any]:
        recipe = self._recipe
        kinds = set(data.train["kind"]) if "kind" in data.train else set()
        return {
            "prompt_format": "chat" if self._chat else "plain",
            # a model taught plain text continues a prompt as text (tailor generate), it was never taught a template
            "data_format": kinds.pop() if len(kinds) == 1 else "pair",
            "generation": (recipe.generation if recipe else GenerationSettings()).model_dump(),
        }

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self, data: PreparedData) -> Callable | None:
        return None  # validation loss is the mean response-token loss already

    def _settings(self, meta: dict[str, Any]) -> GenerationSettings:
        if self._recipe is not None:
            return self._recipe.generation
        return GenerationSettings(**meta.get("generation", {}))

    def _encode_eval(self, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, chat: bool,
                     max_length: int) -> list[dict[str, list[int]]]:
        """Held-out examples with the prompt masked: perplexity is always measured on the answers."""
        return [encode_example(tokenizer, ex, chat, "response", max_length) for ex in examples_of(frame)]

    def _samples(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame,
                 chat: bool, settings: GenerationSettings) -> tuple[list[SamplePrompt], list[str]]:
        """The first ``generation.samples`` held-out rows: what each starts from, and the model's completion."""
        prompts = [sample_prompt(tokenizer, ex, chat) for ex in examples_of(frame.head(settings.samples))]
        return prompts, [generate_text(model, tokenizer, p.ids, settings) for p in prompts]

    def baselines(
        self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
        max_length: int,
    ) -> dict[str, Any]:
        """The pretrained model on the test split: perplexity, and its answers to the sample prompts."""
        chat = self._chat if self._chat is not None else self._setup(recipe, tokenizer)
        model = load_pretrained(AutoModelForCausalLM, resolved, recipe.model)
        batch_size = recipe.training.eval_batch
        encoded = self._encode_eval(tokenizer, data.test, chat, max_length)
        metrics = perplexity(model, encoded, batch_size, _pad_id(tokenizer))
        _, self._before_samples = self._samples(model, tokenizer, data.test, chat, recipe.generation)
        del model
        return {"pretrained": metrics}

    def evaluate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, meta: dict[str, Any],
        settings: EvalSettings,
    ) -> dict[str, Any]:
        chat = meta.get("prompt_format", "chat" if uses_chat_template(tokenizer) else "plain") == "chat"
        encoded = self._encode_eval(tokenizer, frame, chat, settings.max_length)
        metrics = perplexity(model, encoded, settings.batch_size, _pad_id(tokenizer))
        decoding = self._settings(meta)
        prompts, after = self._samples(model, tokenizer, frame, chat, decoding)
        before = self._before_samples or [None] * len(after)
        samples = [
            {"prompt": p.prompt, "reference": p.reference, "before": b, "after": a}
            for p, b, a in zip(prompts, before, after, strict=False)
        ]
        return {"metrics": metrics, "samples": samples}

    def load_eval_file(self, path: Any, meta: dict[str, Any], columns: dict[str, str],
                       clean: bool = False) -> tuple[pd.DataFrame, list]:
        cfg = DataConfig(train=str(path), text_column=columns.get("text_column", "text"))
        return load_generation_file(path, cfg, split="eval", dedupe=clean)

    def predict(self, loaded: LoadedModel, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A completion per prompt, as ``tailor generate`` writes it: the training format, the saved decoding."""
        return [{"completion": complete_with(loaded.model, loaded.tokenizer, loaded.meta, item["prompt"])}
                for item in inputs]


# ---------------------------------------------------------------------------------------------- helpers


def _pad_id(tokenizer: PreTrainedTokenizerBase) -> int:
    for value in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if value is not None:
            return int(value)
    return 0


def _resolve_max_length(recipe: Recipe, lengths: list[int], limit: int) -> int:
    """``max_length: auto`` = the 99th percentile of training lengths (prompt + response), within the limit."""
    if recipe.training.max_length != "auto":
        return min(int(recipe.training.max_length), limit)
    p99 = int(np.percentile(lengths, 99)) if lengths else limit
    return max(8, min(limit, -(-p99 // 8) * 8))


# ---------------------------------------------------------------------------------------------- tailor generate


def load_generator(name: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, dict[str, Any]]:
    """A causal LM to complete prompts with: a run directory, a model folder, or an alias (e.g. ``smollm2``)."""
    from tailorlm.models.loading import load_tokenizer
    from tailorlm.models.registry import read_model_meta, resolve_model
    from tailorlm.models.saved import load_saved_model, model_folder
    from tailorlm.recipe import ModelConfig

    path = Path(str(name)).expanduser()
    if path.exists():
        folder = model_folder(path)
        meta = read_model_meta(folder)
        if meta.get("task") not in (None, "generation"):
            raise ModelError(f"{folder}: a '{meta['task']}' model, not a generation one; use `tailor predict`")
        if meta:
            loaded = load_saved_model(folder)
            return loaded.model, loaded.tokenizer, loaded.meta
    resolved = resolve_model(str(name))
    cfg = ModelConfig(name=str(name))
    model = load_pretrained(AutoModelForCausalLM, resolved, cfg)
    model.eval()
    return model, load_tokenizer(resolved, cfg), {}


def complete(name: str | Path, prompt: str, max_new_tokens: int | None = None) -> str:
    """``tailor generate``: the model's answer to ``prompt``, formatted as in training (chat or plain)."""
    if not prompt.strip():
        raise DataError("--prompt is empty; give the instruction or question to answer")
    model, tokenizer, meta = load_generator(name)
    return complete_with(model, tokenizer, meta, prompt, max_new_tokens)


def complete_with(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, meta: dict[str, Any], prompt: str,
                  max_new_tokens: int | None = None) -> str:
    """A loaded model's answer to ``prompt`` in its training format (chat or plain), with its saved decoding
    settings (greedy unless the recipe sampled): shared by ``tailor generate``, ``predict`` and the server."""
    chat = meta.get("prompt_format", "chat" if uses_chat_template(tokenizer) else "plain") == "chat"
    settings = GenerationSettings(**meta.get("generation", {}))
    if meta.get("data_format") == "text":  # continued pre-training: the prompt is the start of a text
        ids = list(tokenizer(prompt.strip(), add_special_tokens=True)["input_ids"])
    else:
        ids = prompt_ids(tokenizer, Example(prompt.strip(), ""), chat)
    room = max(1, model_token_limit(tokenizer) - (max_new_tokens or settings.max_new_tokens))
    # a prompt longer than the model's window keeps its end, next to the answer (as in training)
    return generate_text(model, tokenizer, ids[-room:], settings, max_new_tokens)
