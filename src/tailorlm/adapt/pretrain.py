"""Domain-adaptive continued pretraining (DAPT; Gururangan et al. 2020, "Don't Stop Pretraining").

The pretrained body keeps learning the team's jargon with its own pretraining objective before any label is
seen: masked-LM for encoders (BERT-like), causal-LM for decoders. The adapted weights go to ``run_dir/adapted/``
and the task head is then built on them as on any pretrained model. Whether it helped with the language is shown
by the held-out domain perplexity before and after, measured on the same (seeded) masked batches.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from rich.console import Console
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedTokenizerBase,
    Trainer,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from tailorlm.adapt.corpus import Corpus, build_corpus
from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import ModelError
from tailorlm.models.loading import load_pretrained
from tailorlm.models.registry import ResolvedModel, check_local_model
from tailorlm.recipe import Recipe
from tailorlm.rundir import ADAPT_STATS, RunDir, replace_dir

#: written last into adapted/: a folder holding it is complete (weights, tokenizer and these numbers)
STATS_FILE = ADAPT_STATS
#: model types that are decoders even when their config does not say ``is_decoder``
DECODER_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen3", "phi", "phi3",
    "gemma", "gemma2", "gemma3_text", "falcon", "opt", "bloom", "olmo", "olmo2", "smollm3", "granite", "stablelm",
})
#: the masking of the holdout is drawn from this seed, so before and after see exactly the same masked tokens
MASK_SEED = 1234


def adapted_dir(run_dir: RunDir) -> Path:
    return run_dir.path / "adapted"


def is_complete(folder: Path) -> bool:
    """Weights, config and the stats file (written last) are all there."""
    return (folder / STATS_FILE).is_file() and (folder / "config.json").is_file() and \
        any(folder.glob("*.safetensors"))


def read_stats(folder: Path) -> dict[str, Any]:
    return json.loads((folder / STATS_FILE).read_text(encoding="utf-8"))


def objective(resolved: ResolvedModel, recipe: Recipe) -> str:
    """``mlm`` for encoders, ``clm`` for decoders, decided from the config; encoder-decoders are refused."""
    config = load_pretrained(AutoConfig, resolved, recipe.model)
    if getattr(config, "is_encoder_decoder", False):
        raise ModelError(f"{resolved.name}: an encoder-decoder model; adapt.pretrain supports encoders (masked-LM) "
                         "and decoders (causal-LM) only; set adapt.pretrain: false for this model")
    architectures = " ".join(getattr(config, "architectures", None) or [])
    if getattr(config, "is_decoder", False) or config.model_type in DECODER_TYPES \
            or "CausalLM" in architectures or "LMHeadModel" in architectures:
        return "clm"
    return "mlm"


def _collator(tokenizer: PreTrainedTokenizerBase, recipe: Recipe, mode: str, seed: int | None
              ) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    mlm = mode == "mlm"
    whole_words = mlm and recipe.adapt.whole_word_mask
    # BERT's 80/10/10 mask/random/keep split; transformers' whole-word masking supports [MASK] only
    replace = {"mask_replace_prob": 1.0, "random_replace_prob": 0.0} if whole_words else {}
    collate = DataCollatorForLanguageModeling(
        tokenizer, mlm=mlm, mlm_probability=recipe.adapt.mlm_probability if mlm else None,
        whole_word_mask=whole_words, seed=seed, **replace,
    )
    return (lambda rows: collate(_pad_offsets(rows))) if whole_words else collate


def _pad_offsets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole-word masking reads word offsets, which the tokenizer's ``pad`` leaves ragged: pad them to the batch's
    longest row with (0, 0), the offsets of a special token."""
    longest = max(len(row["input_ids"]) for row in rows)
    return [row | {"offset_mapping": [*row["offset_mapping"], *[(0, 0)] * (longest - len(row["input_ids"]))]}
            for row in rows]


def _encode(texts: list[str], tokenizer: PreTrainedTokenizerBase, recipe: Recipe, mode: str) -> Dataset:
    """Token ids (no padding: the collator pads per batch); offsets only where whole-word masking needs them."""
    offsets = mode == "mlm" and recipe.adapt.whole_word_mask
    if offsets and not tokenizer.is_fast:
        raise ModelError("adapt.whole_word_mask needs a fast tokenizer (word offsets); set it to false")
    limit = min(recipe.adapt.max_length, tokenizer.model_max_length)  # never past the model's positions
    encoded = tokenizer(texts, truncation=True, max_length=limit, return_special_tokens_mask=mode == "mlm",
                        return_offsets_mapping=offsets)
    return Dataset.from_dict(dict(encoded))


def _masked_batches(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, recipe: Recipe, mode: str,
                    batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The holdout as batches masked once with a fixed seed: the before and after losses are comparable."""
    collate = _collator(tokenizer, recipe, mode, seed=MASK_SEED)
    rows = [dataset[i] for i in range(len(dataset))]
    return [collate(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]


@torch.no_grad()
def perplexity(model: Any, batches: list[dict[str, torch.Tensor]], mode: str) -> float | None:
    """exp of the mean loss per predicted token over the holdout (batches weighted by their predicted tokens:
    a causal LM predicts each token from the previous ones, so its first token is never a target); None
    without a holdout."""
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0
    for batch in batches:
        batch = {k: v.to(device) for k, v in batch.items()}
        targets = batch["labels"][:, 1:] if mode == "clm" else batch["labels"]
        n = int((targets != -100).sum())
        if n:
            total += float(model(**batch).loss) * n
            tokens += n
    return round(math.exp(total / tokens), 4) if tokens else None


def _arguments(recipe: Recipe, out: Path) -> TrainingArguments:
    from tailorlm.train.trainer import use_bf16

    a, t = recipe.adapt, recipe.training
    return TrainingArguments(
        output_dir=str(out), num_train_epochs=a.epochs, learning_rate=a.learning_rate,
        per_device_train_batch_size=a.batch_size or t.batch_size, weight_decay=t.weight_decay,
        warmup_steps=t.warmup, max_grad_norm=t.max_grad_norm, seed=t.seed, data_seed=t.seed,
        save_strategy="no", eval_strategy="no", logging_strategy="steps", logging_steps=50,
        bf16=use_bf16(recipe), use_cpu=not torch.cuda.is_available(), report_to=[], disable_tqdm=True,
        remove_unused_columns=False,  # the collator needs special_tokens_mask and offset_mapping, and pops them
    )


def _train(model: Any, tokenizer: PreTrainedTokenizerBase, train: Dataset, recipe: Recipe, mode: str,
           out: Path) -> tuple[int, float]:
    """Run the Trainer on the pretraining texts; returns (optimizer steps, seconds)."""
    trainer = Trainer(model=model, args=_arguments(recipe, out), train_dataset=train,
                      data_collator=_collator(tokenizer, recipe, mode, seed=None), processing_class=tokenizer)
    trainer.remove_callback(PrinterCallback)  # Trainer's print-every-log and tqdm bar: the console line suffices
    trainer.remove_callback(ProgressCallback)
    started = time.perf_counter()
    trainer.train()
    return trainer.state.global_step, time.perf_counter() - started


def _load_lm(resolved: ResolvedModel, recipe: Recipe, mode: str) -> tuple[Any, bool]:
    """The body with its pretraining head, and whether that head is new: a checkpoint saved without one (a
    sentence encoder such as all-MiniLM-L6-v2) gets a head drawn from the training seed, and its "before"
    perplexity is then that of an untrained head, which the report must say."""
    set_seed(recipe.training.seed)
    factory = AutoModelForMaskedLM if mode == "mlm" else AutoModelForCausalLM
    model, info = load_pretrained(factory, resolved, recipe.model, output_loading_info=True)
    return model, bool(info.get("missing_keys"))


def _save(model: Any, tokenizer: PreTrainedTokenizerBase, stats: dict[str, Any], final: Path) -> None:
    """adapted/ written to a temporary folder and moved into place: a killed run never leaves half of it."""
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / STATS_FILE).write_text(json.dumps(stats, indent=2), encoding="utf-8")
    replace_dir(tmp, final, STATS_FILE)


def _pretrain(recipe: Recipe, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase, corpus: Corpus,
              mode: str, run_dir: RunDir) -> tuple[Any, dict[str, Any]]:
    """Perplexity before, the pretraining itself, perplexity after: the model and the numbers for metrics.json."""
    if mode == "mlm" and tokenizer.mask_token is None:
        raise ModelError(f"{resolved.name}: the tokenizer has no mask token, so masked-LM pretraining cannot run; "
                         "set adapt.pretrain: false")
    model, new_head = _load_lm(resolved, recipe, mode)
    batch_size = recipe.adapt.batch_size or recipe.training.batch_size
    holdout = _masked_batches(_encode(corpus.holdout, tokenizer, recipe, mode), tokenizer, recipe, mode,
                              batch_size) if corpus.holdout else []
    before = perplexity(model, holdout, mode)
    scratch = run_dir.path / ".adapt-checkpoints"
    steps, seconds = _train(model, tokenizer, _encode(corpus.train, tokenizer, recipe, mode), recipe, mode, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    after = perplexity(model, holdout, mode)
    stats = {"objective": "masked-lm" if mode == "mlm" else "causal-lm", "rows": len(corpus.train),
             "holdout_rows": len(corpus.holdout), **corpus.counts, "perplexity_before": before,
             "perplexity_after": after, "new_head": new_head, "steps": steps, "runtime_s": round(seconds, 3),
             "base": resolved.name}
    return model, stats


def continue_pretraining(recipe: Recipe, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
                         data: PreparedData, run_dir: RunDir, console: Console) -> ResolvedModel:
    """Pretrain ``resolved`` further on the domain corpus; save to ``run_dir/adapted/`` and return it as a model.

    The returned model is what the task's ``build_model`` loads its body from (its head stays new); the baselines
    keep measuring ``resolved``, the model the team started from.
    """
    mode = objective(resolved, recipe)
    corpus = build_corpus(recipe, data)
    console.print(f"domain adaptation: {'masked' if mode == 'mlm' else 'causal'}-LM pretraining on "
                  f"{len(corpus.train)} texts ({len(corpus.holdout)} held out; "
                  f"{corpus.counts['dropped_leaking']} dropped as near-duplicates of validation/test texts)")
    model, stats = _pretrain(recipe, resolved, tokenizer, corpus, mode, run_dir)
    _save(model, tokenizer, stats, adapted_dir(run_dir))
    console.print(f"domain perplexity on held-out text: {stats['perplexity_before']} -> {stats['perplexity_after']} "
                  f"({stats['steps']} steps, {stats['runtime_s']:.1f} s)")
    return check_local_model(adapted_dir(run_dir), what="adapt")
