"""Translation (and any text-to-text rewrite, e.g. dialect to standard English) with a seq2seq model.

Before/after is measured by one function (:meth:`TranslationTask.measure`) on the same test rows with the same
decoding settings (``recipe.generation``): corpus BLEU and chrF from sacrebleu, and the teacher-forced loss. The
pretrained model's translations are kept so the report can show each sample before and after tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModelForSeq2SeqLM,
    DataCollatorForSeq2Seq,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tailorlm.data.pipeline import PreparedData, prepare, require_test
from tailorlm.errors import ModelError, UserError
from tailorlm.models.loading import load_pretrained
from tailorlm.models.registry import ResolvedModel, resolve_model
from tailorlm.models.warmstart import is_shipped_warm_start
from tailorlm.recipe import DataConfig, Recipe
from tailorlm.tasks.base import PREDICT_BATCH_SIZE, EncodedSplits, EvalSettings, Task
from tailorlm.tasks.common import set_attention_dropout
from tailorlm.tasks.translation.data import PairRows, load_pair_file
from tailorlm.tasks.translation.spec import MODEL_HINT, SPEC

if TYPE_CHECKING:
    from tailorlm.models.saved import LoadedModel

#: Families pretrained with a task prefix ("translate English to German: ..."), which they expect at fine-tuning.
PREFIX_FAMILIES = frozenset({"t5", "mt5", "umt5", "longt5"})
#: Language names for T5-style prefixes; other codes are used as written.
LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "ro": "Romanian", "es": "Spanish", "it": "Italian",
    "nl": "Dutch", "pt": "Portuguese", "sco": "Scots", "gd": "Scottish Gaelic", "ga": "Irish", "cy": "Welsh",
}
# Config attributes holding dropout probabilities in seq2seq families (T5: dropout_rate; BART/Marian: the rest).
_DROPOUT_KEYS = ("dropout_rate", "dropout", "attention_dropout", "activation_dropout")


@dataclass
class Measured:
    """What one measurement produced: the metrics plus the texts, so samples can pair before with after."""

    metrics: dict[str, Any]
    sources: list[str]
    references: list[str]
    outputs: list[str]


# ---------------------------------------------------------------------------------------------- metrics


def _sacrebleu() -> Any:
    try:
        import sacrebleu
    except ImportError:
        raise UserError("translation scores need sacrebleu; install it with `pip install sacrebleu`") from None
    return sacrebleu


def corpus_scores(outputs: list[str], references: list[str], *, lowercase: bool = False) -> dict[str, Any]:
    """Corpus-level BLEU and chrF (0-100, sacrebleu's defaults) of ``outputs`` against one reference each.

    ``lowercase`` scores case-insensitively: only for a model whose tokenizer cannot produce upper case, where
    case-sensitive scores would measure the vocabulary rather than the translation. The metrics say so.
    """
    sacrebleu = _sacrebleu()
    if lowercase:
        outputs, references = [o.lower() for o in outputs], [r.lower() for r in references]
    scores: dict[str, Any] = {
        "bleu": float(sacrebleu.corpus_bleu(outputs, [references]).score),
        "chrf": float(sacrebleu.corpus_chrf(outputs, [references]).score),
    }
    return scores | ({"case_insensitive": True} if lowercase else {})


def lowercases(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the tokenizer folds case (uncased BERT/MiniLM vocabularies): its outputs can never be cased."""
    ids = tokenizer("Glenmor", add_special_tokens=False)["input_ids"]
    return tokenizer.decode(ids).strip() == "glenmor"


def sentence_chrf(output: str, reference: str) -> float:
    return float(_sacrebleu().sentence_chrf(output, [reference]).score)


# ---------------------------------------------------------------------------------------------- helpers


def task_prefix(model_type: str, source_lang: str | None, target_lang: str | None) -> str:
    """``translate English to German: `` for T5-style models when both languages are known, else nothing."""
    if model_type not in PREFIX_FAMILIES or not (source_lang and target_lang):
        return ""
    src = LANGUAGE_NAMES.get(source_lang, source_lang)
    tgt = LANGUAGE_NAMES.get(target_lang, target_lang)
    return f"translate {src} to {tgt}: "


def _model_type(recipe: Recipe) -> str:
    """The model family (config.model_type), read from the config only; '' when it cannot be read."""
    if not recipe.model.name:
        return ""
    try:
        resolved = resolve_model(recipe.model.name, allow_pickle=recipe.model.allow_pickle)
        return str(getattr(load_pretrained(AutoConfig, resolved, recipe.model), "model_type", ""))
    except ModelError:
        return ""


def set_languages(tokenizer: PreTrainedTokenizerBase, meta: dict[str, Any]) -> None:
    """Multilingual tokenizers (mBART, NLLB, M2M) mark the languages with special tokens: tell them which."""
    for attr, key in (("src_lang", "source_lang"), ("tgt_lang", "target_lang")):
        if meta.get(key) and hasattr(tokenizer, attr):
            setattr(tokenizer, attr, meta[key])


def _forced_bos(tokenizer: PreTrainedTokenizerBase, meta: dict[str, Any]) -> int | None:
    """The target-language token that must start the output (mBART-50, NLLB), when the tokenizer has one."""
    lang = meta.get("target_lang")
    if not lang or not hasattr(tokenizer, "tgt_lang"):
        return None
    token_id = tokenizer.convert_tokens_to_ids(lang)
    return None if token_id is None or token_id == tokenizer.unk_token_id else int(token_id)


def _auto_length(setting: int | str, texts: list[str], tokenizer: PreTrainedTokenizerBase, target: bool) -> int:
    """``auto`` = the 99th percentile of training lengths (rounded up to 8), within the tokenizer's limit."""
    limit = int(min(getattr(tokenizer, "model_max_length", 512) or 512, 8192))
    if setting != "auto":
        return min(int(setting), limit)
    encoded = tokenizer(text_target=texts, truncation=False) if target else tokenizer(texts, truncation=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    p99 = int(np.percentile(lengths, 99)) if lengths else limit
    return max(8, min(limit, -(-p99 // 8) * 8))


def _tokenize(frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, prefix: str, src_max: int,
              tgt_max: int) -> Dataset:
    sources = [prefix + s for s in frame["src_text"]]
    encoded = dict(tokenizer(sources, truncation=True, max_length=src_max))
    labels = tokenizer(text_target=list(frame["tgt_text"]), truncation=True, max_length=tgt_max)["input_ids"]
    encoded["labels"] = labels
    # grouping by source + target length: both sides cost compute in an encoder-decoder
    encoded["length"] = [len(s) + len(t) for s, t in zip(encoded["input_ids"], labels, strict=True)]
    return Dataset.from_dict(encoded)


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _batches(texts: list[str], batch_size: int) -> list[list[int]]:
    """Indices grouped by length (longest first): beams over padding are the slowest part of decoding."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def translate(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sources: list[str], max_length: int,
              batch_size: int, generation: dict[str, Any], forced_bos: int | None = None) -> list[str]:
    """Decode every source with the recipe's generation settings; outputs in input order."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": int(generation.get("max_new_tokens", 64)),
        "num_beams": int(generation.get("num_beams", 1)),
        "do_sample": bool(generation.get("do_sample", False)),
    }
    if kwargs["do_sample"]:
        kwargs |= {"temperature": float(generation.get("temperature", 0.7)), "top_p": float(generation.get("top_p", 1))}
        torch.manual_seed(0)  # sampled outputs are reproducible run to run
    if forced_bos is not None:
        kwargs["forced_bos_token_id"] = forced_bos
    model.eval()
    outputs: list[str] = [""] * len(sources)
    device = _device(model)
    with torch.inference_mode():
        for batch in _batches(sources, batch_size):
            enc = tokenizer([sources[i] for i in batch], truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(device)
            generated = model.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], **kwargs)
            for i, text in zip(batch, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
                outputs[i] = text.strip()
    return outputs


def teacher_forced_loss(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sources: list[str],
                        targets: list[str], max_length: int, target_max: int, batch_size: int) -> float:
    """Mean cross-entropy per target token: the validation metric, measured the same way before and after."""
    frame = pd.DataFrame({"src_text": sources, "tgt_text": targets})
    features = _tokenize(frame, tokenizer, "", max_length, target_max).remove_columns("length")
    collate = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)
    model.eval()
    total, tokens = 0.0, 0
    device = _device(model)
    with torch.inference_mode():
        for batch in _batches(sources, batch_size):
            inputs = collate([features[i] for i in batch]).to(device)
            n = int((inputs["labels"] != -100).sum())
            total += float(model(**inputs).loss) * n
            tokens += n
    return total / tokens if tokens else float("nan")


# ---------------------------------------------------------------------------------------------- the task


class TranslationTask(Task):
    spec = SPEC
    input_fields = ("text",)
    input_aliases = {"source": "text"}  # noqa: RUF012

    def __init__(self) -> None:
        #: the pretrained model's output per source text, from the baseline, for before/after samples
        self._before: dict[str, str] = {}

    # ------------------------------------------------------------------ data
    def prepare_data(self, recipe: Recipe, count_tokens: Callable[[list[str]], list[int]] | None) -> PreparedData:
        data = prepare(recipe.data, PairRows(), count_tokens)
        require_test(data, recipe.data, "pairs")
        cfg = recipe.data
        data.meta = {
            "source_column": cfg.source_column,
            "target_column": cfg.target_column,
            "source_lang": cfg.source_lang,
            "target_lang": cfg.target_lang,
            "prefix": task_prefix(_model_type(recipe), cfg.source_lang, cfg.target_lang),
            "generation": recipe.generation.model_dump(mode="json"),
        }
        return data

    def encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        set_languages(tokenizer, data.meta)
        prefix = data.meta.get("prefix", "")
        setting = recipe.training.max_length
        src_max = _auto_length(setting, [prefix + s for s in data.train["src_text"]], tokenizer, target=False)
        tgt_max = _auto_length(setting, list(data.train["tgt_text"]), tokenizer, target=True)
        train = _tokenize(data.train, tokenizer, prefix, src_max, tgt_max)
        validation = _tokenize(data.validation, tokenizer, prefix, src_max, tgt_max) if len(data.validation) else None
        return EncodedSplits(train, validation, max_length=src_max, stats={"target_max_length": tgt_max})

    def after_encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase,
                     encoded: EncodedSplits) -> None:
        set_languages(tokenizer, data.meta)  # generation after training needs the language tokens set
        data.meta["target_max_length"] = encoded.stats["target_max_length"]

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        # labels padded with -100 so padding never counts in the loss; the model shifts them into decoder inputs
        return DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100)

    # ------------------------------------------------------------------ model
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> PreTrainedModel:
        config = load_pretrained(AutoConfig, resolved, recipe.model)
        if not getattr(config, "is_encoder_decoder", False):
            raise ModelError(
                f"{resolved.name}: a '{getattr(config, 'model_type', '?')}' model is not a seq2seq "
                f"(encoder-decoder) model; {MODEL_HINT}"
            )
        if recipe.training.dropout is not None:
            for key in _DROPOUT_KEYS:
                if hasattr(config, key):
                    setattr(config, key, recipe.training.dropout)
        set_attention_dropout(config, recipe.training.attention_dropout)
        return load_pretrained(AutoModelForSeq2SeqLM, resolved, recipe.model, config=config)

    def model_meta(self, data: PreparedData) -> dict[str, Any]:
        return dict(data.meta)

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self, data: PreparedData) -> Callable | None:
        return None  # validation picks the checkpoint by loss; decoding every epoch would dominate the run time

    def measure(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame,
                meta: dict[str, Any], settings: EvalSettings) -> Measured:
        """The one measurement used before and after tuning: decode, score BLEU/chrF, teacher-forced loss."""
        generation = meta.get("generation") or {}
        cap = generation.get("max_eval_rows")
        rows = frame.head(int(cap)) if cap else frame
        set_languages(tokenizer, meta)
        prefix = meta.get("prefix") or ""
        sources = [str(s) for s in rows["src_text"]]
        references = [str(t) for t in rows["tgt_text"]]
        inputs = [prefix + s for s in sources]
        outputs = translate(model, tokenizer, inputs, settings.max_length, settings.batch_size, generation,
                            _forced_bos(tokenizer, meta))
        target_max = int(meta.get("target_max_length") or settings.max_length)
        loss = teacher_forced_loss(model, tokenizer, inputs, references, settings.max_length, target_max,
                                   settings.batch_size)
        metrics = corpus_scores(outputs, references, lowercase=lowercases(tokenizer)) | {"loss": loss, "n": len(rows)}
        return Measured(metrics, sources, references, outputs)

    def baselines(
        self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
        max_length: int,
    ) -> dict[str, Any]:
        """Leaving the text as it is (copy the source), and the pretrained model as it is, decoded as the tuned one.

        Copying is the reference any rewrite must clear: for dialect → standard English much of a sentence is
        already right, and a model that scores below the copy has learnt to damage text. ``pretrained`` is marked a
        floor (``floor: true``, evaluate/floors.py) for the shipped minilm-seq2seq, whose cross-attention is random
        before tuning; for a real pretrained seq2seq model it is a reference.
        """
        results = {"copy_source": self._copy_source(data.test, data.meta, tokenizer)}
        if not recipe.baseline.zero_shot:
            return results
        model = load_pretrained(AutoModelForSeq2SeqLM, resolved, recipe.model)
        if torch.cuda.is_available():
            model.to("cuda")  # beam search on a CPU would dominate the run on a GPU machine
        settings = EvalSettings(max_length=max_length,
                                batch_size=recipe.training.eval_batch)
        measured = self.measure(model, tokenizer, data.test, data.meta, settings)
        self._before = dict(zip(measured.sources, measured.outputs, strict=True))
        del model  # the training copy is already in memory; this one is not needed again
        floor = is_shipped_warm_start(resolved.name, resolved.source)
        method = "the pretrained model before fine-tuning, same test rows and decoding settings" + (
            "; a floor: the warm-started encoder-decoder's cross-attention is untrained" if floor else "")
        return results | {"pretrained": measured.metrics | {"method": method, "floor": floor}}

    @staticmethod
    def _copy_source(frame: pd.DataFrame, meta: dict[str, Any], tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
        cap = (meta.get("generation") or {}).get("max_eval_rows")
        rows = frame.head(int(cap)) if cap else frame
        sources, references = [str(s) for s in rows["src_text"]], [str(t) for t in rows["tgt_text"]]
        scores = corpus_scores(sources, references, lowercase=lowercases(tokenizer))
        return scores | {"n": len(rows), "method": "the source text copied unchanged (no model)"}

    def evaluate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, meta: dict[str, Any],
        settings: EvalSettings,
    ) -> dict[str, Any]:
        measured = self.measure(model, tokenizer, frame, meta, settings)
        n_samples = int((meta.get("generation") or {}).get("samples", 5))
        samples = [
            {"source": src, "reference": ref, "before": self._before.get(src), "after": out}
            for src, ref, out in list(zip(measured.sources, measured.references, measured.outputs, strict=True))[
                :n_samples]
        ]
        return {"metrics": measured.metrics, "samples": samples, "errors": worst_translations(measured,
                                                                                             settings.top_errors)}

    def predict(self, loaded: LoadedModel, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each text translated as the test split was: cleaned with the run's ``data.clean``, then the saved
        prefix, language tokens and decoding settings."""
        from tailorlm.data.clean import clean_text

        meta = loaded.meta
        set_languages(loaded.tokenizer, meta)
        prefix = meta.get("prefix") or ""
        cleaning = loaded.clean
        sources = [prefix + clean_text(str(item.get("text", item.get("source"))), cleaning) for item in inputs]
        outputs = translate(loaded.model, loaded.tokenizer, sources, loaded.max_length, PREDICT_BATCH_SIZE,
                            meta.get("generation") or {}, _forced_bos(loaded.tokenizer, meta))
        return [{"translation": out} for out in outputs]

    def load_eval_file(self, path: Any, meta: dict[str, Any], columns: dict[str, str],
                       clean: bool = False) -> tuple[pd.DataFrame, list]:
        """A file of pairs; the CLI's default text/label column names mean "the columns the model was tuned on".
        Duplicate pairs are scored each time unless ``clean``."""
        text_column = columns.get("text_column", "text")
        label_column = columns.get("label_column", "label")
        from tailorlm.data.clean import saved_cleaning

        cfg = DataConfig(
            train=str(path),
            clean=saved_cleaning(meta),  # the run's data.clean, as its test split was cleaned
            source_column=meta.get("source_column", "source") if text_column == "text" else text_column,
            target_column=meta.get("target_column", "target") if label_column == "label" else label_column,
        )
        return load_pair_file(path, cfg, split="eval", dedupe=clean)


def worst_translations(measured: Measured, k: int) -> list[dict[str, Any]]:
    """The k test sentences with the lowest sentence chrF (exact matches left out): where a reviewer's eye pays."""
    if k <= 0:
        return []
    scored = [(sentence_chrf(out, ref), src, ref, out)
              for src, ref, out in zip(measured.sources, measured.references, measured.outputs, strict=True)
              if out != ref]
    scored.sort(key=lambda item: item[0])
    return [{"source": src, "reference": ref, "predicted": out, "chrf": round(score, 2)}
            for score, src, ref, out in scored[:k]]
