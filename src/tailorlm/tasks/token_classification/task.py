"""Token classification (named entities and other word tags, BIO): a per-token head on an encoder.

Words are tokenized with ``is_split_into_words``; each word's tag goes to its first sub-word and the other
sub-words are ignored (-100) in the loss and the metrics, so a score counts words, not word pieces. Scores are
seqeval's entity-level precision/recall/F1 (an entity counts only when its type and every boundary are right),
the standard for NER, plus word accuracy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForTokenClassification,
    DataCollatorForTokenClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tailorlm.data.pipeline import PreparedData, prepare, require_test
from tailorlm.errors import ModelError
from tailorlm.evaluate.inference import model_device, sorted_batches
from tailorlm.models.loading import load_pretrained
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe
from tailorlm.tasks.base import PREDICT_BATCH_SIZE, EncodedSplits, EvalSettings, Task
from tailorlm.tasks.common import PROBE_TOLERANCE, model_token_limit, set_dropout
from tailorlm.tasks.token_classification.data import TokenRows, entity_types, load_token_file, repair_bio
from tailorlm.tasks.token_classification.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.models.saved import LoadedModel

IGNORE = -100
#: words given to the per-token linear probe at most (logistic regression cost grows with them)
PROBE_MAX_WORDS = 20_000


# ---------------------------------------------------------------------------------------------- metrics


def _entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    from seqeval.metrics.sequence_labeling import get_entities

    return {(kind, start, end) for kind, start, end in get_entities(list(tags))}


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, Any]:
    """seqeval entity-level P/R/F1 (micro, macro, weighted), per entity type, and word accuracy."""
    from seqeval.metrics import accuracy_score, classification_report

    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    avg = {name: report.get(f"{name} avg", {}) for name in ("micro", "macro", "weighted")}
    per_class = {
        kind: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
               "support": int(v["support"])}
        for kind, v in sorted(report.items()) if not kind.endswith(" avg")
    }
    metrics: dict[str, Any] = {
        "f1": float(avg["micro"].get("f1-score", 0.0)),
        "precision": float(avg["micro"].get("precision", 0.0)),
        "recall": float(avg["micro"].get("recall", 0.0)),
    }
    for name, values in avg.items():
        for key, out in (("precision", "precision"), ("recall", "recall"), ("f1-score", "f1")):
            metrics[f"{out}_{name}"] = float(values.get(key, 0.0))
    words = sum(len(t) for t in gold)
    metrics["accuracy"] = float(accuracy_score(gold, predicted)) if words else 0.0
    metrics["n"] = len(gold)
    metrics["n_words"] = words
    metrics["n_entities"] = sum(v["support"] for v in per_class.values())
    metrics["per_class"] = per_class
    return metrics


def _aligned_tags(
    predictions: np.ndarray, label_ids: np.ndarray, labels: list[str]
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted tags of the labelled positions (first sub-words) of each row."""
    gold, predicted = [], []
    for pred_row, gold_row in zip(predictions, label_ids, strict=True):
        keep = gold_row != IGNORE
        gold.append([labels[i] for i in gold_row[keep]])
        predicted.append(repair_bio([labels[i] for i in pred_row[keep]])[0])
    return gold, predicted


# ---------------------------------------------------------------------------------------------- tokenization


def require_fast(tokenizer: PreTrainedTokenizerBase) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"{getattr(tokenizer, 'name_or_path', 'the model')}: token classification needs a fast tokenizer "
            "(tokenizer.json) to map sub-words to words; pick a model that ships one"
        )


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int], label_all: bool = False) -> list[int]:
    """Word tags on sub-words: the first sub-word of a word gets its tag; later ones and specials get -100.

    With ``label_all`` later sub-words carry the word's tag too (a choice some papers make); evaluation always
    reads the first sub-word only.
    """
    aligned, previous = [], None
    for word in word_ids:
        if word is None:
            aligned.append(IGNORE)
        elif word != previous:
            aligned.append(word_labels[word])
        else:
            aligned.append(word_labels[word] if label_all else IGNORE)
        previous = word
    return aligned


def encode_words(
    frame: pd.DataFrame, labels: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> Dataset:
    """Sub-word ids, aligned labels and a length column (for length-grouped batches)."""
    index = {label: i for i, label in enumerate(labels)}
    encoded = tokenizer(list(frame["tokens"]), is_split_into_words=True, truncation=True, max_length=max_length)
    columns = {key: list(values) for key, values in encoded.items()}
    columns["labels"] = [
        align_labels(encoded.word_ids(i), [index[t] for t in tags]) for i, tags in enumerate(frame["tags"])
    ]
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return Dataset.from_dict(columns)


def resolve_word_max_length(recipe: Recipe, frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase) -> int:
    """``max_length: auto`` = p99 of training sentences in sub-words (specials included), within the limit."""
    limit = model_token_limit(tokenizer)
    if recipe.training.max_length != "auto":
        return min(int(recipe.training.max_length), limit)
    encoded = tokenizer(list(frame["tokens"]), is_split_into_words=True, truncation=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    p99 = int(np.percentile(lengths, 99)) if lengths else limit
    return max(8, min(limit, -(-p99 // 8) * 8))


@torch.inference_mode()
def first_subword_outputs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[list[str]], max_length: int,
    batch_size: int, head: Callable[[Any], torch.Tensor],
) -> list[np.ndarray]:
    """Per sentence, ``head(outputs)`` at the first sub-word of each word (length-sorted batches).

    Words cut off by ``max_length`` get no row: arrays may be shorter than their sentence.
    """
    encoded = tokenizer(list(sentences), is_split_into_words=True, truncation=True, max_length=max_length)
    device = model_device(model)
    was_training = model.training
    model.eval()
    rows: list[np.ndarray] = [np.zeros((0, 0), dtype=np.float32)] * len(sentences)
    for batch_idx in sorted_batches([len(ids) for ids in encoded["input_ids"]], batch_size):
        features = [{k: encoded[k][i] for k in encoded} for i in batch_idx]
        batch = {k: v.to(device) for k, v in tokenizer.pad(features, return_tensors="pt").items()}
        values = head(model(**batch)).float().cpu().numpy()
        for value, i in zip(values, batch_idx, strict=True):
            word_ids = encoded.word_ids(int(i))
            firsts = [p for p, w in enumerate(word_ids) if w is not None and (p == 0 or word_ids[p - 1] != w)]
            rows[i] = value[firsts]
    model.train(was_training)
    return rows


def predict_tags(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sentences: Sequence[list[str]], labels: list[str],
    max_length: int, batch_size: int,
) -> tuple[list[list[str]], list[float]]:
    """Predicted BIO tags per word (words past max_length: O) and each sentence's mean confidence."""

    def probs(outputs: Any) -> torch.Tensor:
        return torch.softmax(outputs.logits.float(), dim=-1)

    tags, confidence = [], []
    for words, p in zip(sentences, first_subword_outputs(model, tokenizer, sentences, max_length, batch_size, probs),
                        strict=True):
        predicted = [labels[i] for i in p.argmax(axis=1)] if len(p) else []
        tags.append(repair_bio(predicted + ["O"] * (len(words) - len(predicted)))[0])
        confidence.append(float(p.max(axis=1).mean()) if len(p) else 0.0)
    return tags, confidence


# ---------------------------------------------------------------------------------------------- errors


def _describe(words: list[str], tags: list[str]) -> list[dict[str, Any]]:
    return [{"type": kind, "text": " ".join(words[start:end + 1]), "start": start, "end": end + 1}
            for kind, start, end in sorted(_entities(tags), key=lambda e: (e[1], e[0]))]


def _as_text(entities: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e['type']}: {e['text']}" for e in entities) or "(no entities)"


def entity_counts(gold: Sequence[str], predicted: Sequence[str]) -> dict[str, int]:
    """One sentence's entity true positives, false positives and false negatives (exact type and boundaries).

    Summed over sentences they give seqeval's micro entity F1 exactly, so the paired bootstrap can resample
    sentences and recompute the corpus-level score (evaluate/stats.py: ``entity_f1_stat``)."""
    gold_entities, predicted_entities = _entities(gold), _entities(predicted)
    return {"tp": len(gold_entities & predicted_entities), "fp": len(predicted_entities - gold_entities),
            "fn": len(gold_entities - predicted_entities)}


def sentence_rows(frame: pd.DataFrame, predicted: list[list[str]]) -> list[dict[str, Any]]:
    """predictions.jsonl rows: the sentence (as ``text``), its gold and predicted tags, its entity counts."""
    from tailorlm.evaluate.predictions import row_identity

    rows = frame.reset_index(drop=True)
    return [row_identity(rows, i) | {"text": " ".join(rows.at[i, "tokens"]), "gold": list(rows.at[i, "tags"]),
                                     "predicted_tags": tags, "scores": entity_counts(rows.at[i, "tags"], tags)}
            for i, tags in enumerate(predicted)]


def per_sentence_counts(test: pd.DataFrame, predicted: list[list[str]]) -> list[dict[str, Any]]:
    """A baseline's ``per_example`` entries: entity counts per test sentence, in the test's order."""
    return [{"scores": entity_counts(gold, tags)} for gold, tags in zip(test["tags"], predicted, strict=True)]


def sentence_errors(
    frame: pd.DataFrame, predicted: list[list[str]], confidence: list[float], k: int
) -> list[dict[str, Any]]:
    """Sentences whose entities differ from the gold ones, the most wrong (then the most confident) first."""
    rows = frame.reset_index(drop=True)
    found = []
    for i, gold in enumerate(rows["tags"]):
        wrong = len(_entities(gold) ^ _entities(predicted[i]))
        if wrong:
            found.append((wrong, confidence[i], i))
    found.sort(key=lambda x: (-x[0], -x[1], x[2]))
    errors = []
    for wrong, conf, i in found[:k]:
        words = list(rows.at[i, "tokens"])
        gold_entities, predicted_entities = _describe(words, rows.at[i, "tags"]), _describe(words, predicted[i])
        errors.append({
            "text": " ".join(words),
            "label": _as_text(gold_entities),
            "predicted": _as_text(predicted_entities),
            "confidence": conf,
            "wrong_entities": wrong,
            "gold_entities": gold_entities,
            "predicted_entities": predicted_entities,
            "source": str(rows.at[i, "source"]) if "source" in rows else None,
            "row": int(rows.at[i, "row"]) if "row" in rows else None,
        })
    return errors


# ---------------------------------------------------------------------------------------------- baselines


def majority_tag(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, Any]:
    """Each word's most frequent training tag (exact word, then lower-cased); unseen words are O.

    What a team could do with a word list and no model: a fair floor for entity tagging.
    """
    exact: dict[str, Counter] = {}
    folded: dict[str, Counter] = {}
    for words, tags in zip(train["tokens"], train["tags"], strict=True):
        for word, tag in zip(words, tags, strict=True):
            exact.setdefault(word, Counter())[tag] += 1
            folded.setdefault(word.lower(), Counter())[tag] += 1

    def tag_of(word: str) -> str:
        counts = exact.get(word) or folded.get(word.lower())
        return counts.most_common(1)[0][0] if counts else "O"

    predicted = [repair_bio([tag_of(w) for w in words])[0] for words in test["tokens"]]
    metrics = entity_metrics(list(map(list, test["tags"])), predicted)
    metrics["method"] = "each word gets its most frequent tag in the training data; unseen words get O"
    return metrics | {"per_example": per_sentence_counts(test, predicted)}


def token_linear_probe(
    encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, train: pd.DataFrame, test: pd.DataFrame,
    labels: list[str], max_length: int, batch_size: int, seed: int,
) -> dict[str, Any]:
    """Logistic regression on frozen encoder states of each word's first sub-word."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    def hidden(outputs: Any) -> torch.Tensor:
        return outputs.last_hidden_state

    index = {label: i for i, label in enumerate(labels)}
    train_states = first_subword_outputs(encoder, tokenizer, list(train["tokens"]), max_length, batch_size, hidden)
    x = np.concatenate([s for s in train_states if len(s)])
    y = np.concatenate([[index[t] for t in tags[: len(s)]] for s, tags in zip(train_states, train["tags"],
                                                                              strict=True) if len(s)])
    if len(x) > PROBE_MAX_WORDS:
        keep = np.random.default_rng(seed).choice(len(x), PROBE_MAX_WORDS, replace=False)
        x, y = x[keep], y[keep]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = LogisticRegression(max_iter=2000, tol=PROBE_TOLERANCE, random_state=seed).fit(x, y)
    predicted = []
    for words, states in zip(test["tokens"], first_subword_outputs(encoder, tokenizer, list(test["tokens"]),
                                                                   max_length, batch_size, hidden), strict=True):
        tags = [labels[i] for i in probe.predict(states)] if len(states) else []
        predicted.append(repair_bio(tags + ["O"] * (len(words) - len(tags)))[0])
    metrics = entity_metrics(list(map(list, test["tags"])), predicted)
    metrics["method"] = "logistic regression on frozen pretrained states of each word's first sub-word"
    return metrics | {"per_example": per_sentence_counts(test, predicted)}


def _words(item: dict[str, Any]) -> list[str]:
    """A predict input's words: its ``tokens`` (a list, or a string split on whitespace), else its ``text`` split."""
    tokens = item.get("tokens")
    if isinstance(tokens, list):
        return list(tokens)
    return str(tokens if tokens is not None else item["text"]).split()


def model_tags(model: PreTrainedModel, meta: dict[str, Any]) -> list[str]:
    """The BIO tags in the order of the model's outputs: from tailor_model.json, else the config's id2label."""
    if meta.get("tags"):
        return list(meta["tags"])
    id2label = model.config.id2label
    return [id2label[i] for i in sorted(id2label)]


# ---------------------------------------------------------------------------------------------- the task


class TokenClassificationTask(Task):
    spec = SPEC
    input_fields = ("text",)
    input_aliases = {"tokens": "text"}  # noqa: RUF012
    list_inputs = frozenset({"tokens"})

    # ------------------------------------------------------------------ data
    def prepare_data(self, recipe: Recipe, count_tokens: Callable[[list[str]], list[int]] | None) -> PreparedData:
        data = prepare(recipe.data, TokenRows(), count_tokens)
        require_test(data, recipe.data, "sentences")
        return data

    def encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        require_fast(tokenizer)
        max_length = resolve_word_max_length(recipe, data.train, tokenizer)
        train = encode_words(data.train, data.labels, tokenizer, max_length)
        validation = encode_words(data.validation, data.labels, tokenizer, max_length) if len(data.validation) else None
        truncated = sum(1 for n in train["length"] if n >= max_length)
        return EncodedSplits(train=train, validation=validation, max_length=max_length,
                             stats={"truncated_train_sentences": truncated})

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        return DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)

    # ------------------------------------------------------------------ model
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> PreTrainedModel:
        labels = data.labels
        config = load_pretrained(
            AutoConfig, resolved, recipe.model, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
        set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
        return load_pretrained(AutoModelForTokenClassification, resolved, recipe.model, config=config)

    def model_meta(self, data: PreparedData) -> dict[str, Any]:
        """``labels`` are the entity types (what metrics, per_class and the report are about); ``tags`` are the
        BIO tags in the head's order (also in config.id2label)."""
        return {"labels": entity_types(data.labels), "tags": data.labels}

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self, data: PreparedData) -> Callable:
        labels = data.labels

        def compute(eval_pred: Any) -> dict[str, float]:
            logits, label_ids = eval_pred.predictions, eval_pred.label_ids
            if isinstance(logits, tuple):
                logits = logits[0]
            gold, predicted = _aligned_tags(np.argmax(logits, axis=-1), label_ids, labels)
            metrics = entity_metrics(gold, predicted)
            return {k: metrics[k] for k in ("f1", "precision", "recall", "f1_macro", "accuracy")}

        return compute

    def evaluate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, meta: dict[str, Any],
        settings: EvalSettings,
    ) -> dict[str, Any]:
        require_fast(tokenizer)
        labels = model_tags(model, meta)
        sentences = [list(words) for words in frame["tokens"]]
        predicted, confidence = predict_tags(model, tokenizer, sentences, labels, settings.max_length,
                                             settings.batch_size)
        metrics = entity_metrics([list(t) for t in frame["tags"]], predicted)
        return {"metrics": metrics, "errors": sentence_errors(frame, predicted, confidence, settings.top_errors),
                "predictions": sentence_rows(frame, predicted)}  # predictions.jsonl (evaluate/predictions.py)

    def predict(self, loaded: LoadedModel, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Tags and entities per sentence: ``tokens`` as given, or ``text`` split on whitespace (the words the tags
        belong to); an entity spans ``tokens[start_token:end_token]`` (end exclusive, like a Python slice)."""
        require_fast(loaded.tokenizer)
        sentences = [_words(item) for item in inputs]
        labels = model_tags(loaded.model, loaded.meta)
        tags, confidence = predict_tags(loaded.model, loaded.tokenizer, sentences, labels, loaded.max_length,
                                        PREDICT_BATCH_SIZE)
        return [
            {"tokens": words, "tags": sentence_tags, "confidence": round(conf, 6),
             "entities": [{"type": e["type"], "text": e["text"], "start_token": e["start"], "end_token": e["end"]}
                          for e in _describe(words, sentence_tags)]}
            for words, sentence_tags, conf in zip(sentences, tags, confidence, strict=True)
        ]

    def load_eval_file(self, path: Any, meta: dict[str, Any], columns: dict[str, str],
                       clean: bool = False) -> tuple[pd.DataFrame, list]:
        """``tailor eval --data``: CoNLL, or JSONL/JSON with ``tokens``/``tags`` lists (``--text-column`` and
        ``--label-column`` rename them when given); every sentence is scored (``clean`` changes nothing here)."""
        tokens = columns.get("text_column", "text")
        tags = columns.get("label_column", "label")
        return load_token_file(path, list(meta["tags"]), tokens_column="tokens" if tokens == "text" else tokens,
                               tags_column="tags" if tags == "label" else tags)

    # ------------------------------------------------------------------ baselines
    def baselines(
        self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
        max_length: int,
    ) -> dict[str, Any]:
        result: dict[str, Any] = {"majority_tag": majority_tag(data.train, data.test)}
        if recipe.baseline.linear_probe:
            train = data.train
            cap = recipe.baseline.max_train_rows
            if cap is not None and len(train) > cap:
                train = train.sample(n=cap, random_state=recipe.data.seed)
            encoder = load_pretrained(AutoModel, resolved, recipe.model)
            batch_size = recipe.training.eval_batch
            result["linear_probe"] = token_linear_probe(encoder, tokenizer, train, data.test, data.labels,
                                                        max_length, batch_size, recipe.data.seed)
        return result
