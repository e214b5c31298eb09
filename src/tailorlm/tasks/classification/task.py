"""Text classification (sentiment, intent, topic, emotion): a sequence-classification head on an encoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tailorlm.data.pipeline import PreparedData, prepare, require_test
from tailorlm.evaluate.calibration import MIN_ROWS as MIN_CALIBRATION_ROWS
from tailorlm.evaluate.calibration import fit_temperature, set_temperature, temperature_of
from tailorlm.evaluate.inference import forward_sorted, logits_of, mean_pooled
from tailorlm.evaluate.metrics import classification_metrics, expected_calibration_error, softmax
from tailorlm.evaluate.predictions import label_rows
from tailorlm.models.loading import load_pretrained
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe
from tailorlm.tasks.base import PREDICT_BATCH_SIZE, EncodedSplits, EvalSettings, InputProblem, Task
from tailorlm.tasks.classification.baselines import label_prompt, linear_probe, zero_shot
from tailorlm.tasks.classification.data import ClassificationRows
from tailorlm.tasks.classification.spec import SPEC
from tailorlm.tasks.common import model_token_limit, set_dropout

if TYPE_CHECKING:
    from tailorlm.models.saved import LoadedModel

def label_ids(frame: pd.DataFrame, labels: list[str]) -> np.ndarray:
    index = {label: i for i, label in enumerate(labels)}
    return np.array([index[label] for label in frame["label"]], dtype=np.int64)


class ClassificationTask(Task):
    spec = SPEC
    input_fields = ("text",)

    # ------------------------------------------------------------------ data
    def prepare_data(self, recipe: Recipe, count_tokens: Callable[[list[str]], list[int]] | None) -> PreparedData:
        # side columns for the bias audit (fairness/), never a model input
        groups = {group: "fairness.group_column" for group in recipe.fairness.group_columns}
        rows = ClassificationRows(groups or None)
        data = prepare(recipe.data, rows, count_tokens)
        require_test(data, recipe.data, "rows")
        return data

    def encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        max_length = resolve_max_length(recipe, data, tokenizer)
        train = _tokenize(data.train, data.labels, tokenizer, max_length)
        validation = _tokenize(data.validation, data.labels, tokenizer, max_length) if len(data.validation) else None
        return EncodedSplits(train=train, validation=validation, max_length=max_length)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=None)

    # ------------------------------------------------------------------ model
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> PreTrainedModel:
        labels = data.labels
        config = load_pretrained(
            AutoConfig,
            resolved,
            recipe.model,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )
        config.problem_type = "single_label_classification"
        set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
        return load_pretrained(AutoModelForSequenceClassification, resolved, recipe.model, config=config)

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self, data: PreparedData) -> Callable:
        labels = data.labels

        def compute(eval_pred: Any) -> dict[str, float]:
            logits, y_true = eval_pred.predictions, eval_pred.label_ids
            if isinstance(logits, tuple):
                logits = logits[0]
            metrics = classification_metrics(y_true, np.argmax(logits, axis=1), labels, softmax(logits))
            return {k: v for k, v in metrics.items() if isinstance(v, float)}

        return compute

    def predict_logits(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
        batch_size: int,
    ) -> np.ndarray:
        return forward_sorted(model, tokenizer, texts, max_length, batch_size, logits_of).astype(np.float64)

    def predict_proba(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
        batch_size: int,
    ) -> np.ndarray:
        """Class probabilities, divided by the model's fitted temperature (evaluate/calibration.py)."""
        logits = self.predict_logits(model, tokenizer, texts, max_length, batch_size)
        return softmax(logits / temperature_of(model))

    def calibrate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, data: PreparedData, recipe: Recipe,
        settings: EvalSettings,
    ) -> dict[str, Any]:
        """Fit a softmax temperature on the validation split (``training.calibrate``); the labels never change."""
        if not recipe.training.calibrate:
            return {}
        rows = len(data.validation)
        if rows < MIN_CALIBRATION_ROWS:
            return {"report": {"temperature": 1.0, "skipped": f"only {rows} validation rows (fewer than "
                                                              f"{MIN_CALIBRATION_ROWS}); no temperature fitted"}}
        logits = self.predict_logits(model, tokenizer, list(data.validation["text"]), settings.max_length,
                                     settings.batch_size)
        fitted = fit_temperature(logits, label_ids(data.validation, data.labels))
        set_temperature(model, fitted["temperature"])
        report = {"method": "temperature scaling on the validation split (Guo et al. 2017)",
                  "validation_rows": rows, **fitted}
        return {"meta": {"temperature": fitted["temperature"]}, "report": report}

    def evaluate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, meta: dict[str, Any],
        settings: EvalSettings,
    ) -> dict[str, Any]:
        labels = list(meta["labels"])
        logits = self.predict_logits(model, tokenizer, list(frame["text"]), settings.max_length, settings.batch_size)
        temperature = temperature_of(model)
        probs = softmax(logits / temperature)
        y_true = label_ids(frame, labels)
        metrics = classification_metrics(y_true, probs.argmax(axis=1), labels, probs)
        if temperature != 1.0:  # what calibration changed, on rows it never saw
            metrics["ece_uncalibrated"] = expected_calibration_error(softmax(logits), y_true)
        return {"metrics": metrics, "errors": most_confident_errors(frame, probs, y_true, labels, settings.top_errors),
                "predictions": label_rows(frame, probs, labels)}

    def model_meta(self, data: PreparedData) -> dict[str, Any]:
        return {"labels": data.labels}

    def predict(self, loaded: LoadedModel, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The label, its probability and every class's, per text; texts are cleaned as training texts were
        (the run's ``data.clean``: invisible characters, NFKC, whitespace, lowercase), so a pasted text gets the
        prediction its clean twin gets."""
        from tailorlm.data.clean import clean_text

        labels = loaded.labels
        cleaning = loaded.clean
        texts = [clean_text(item["text"], cleaning) for item in inputs]
        probs = self.predict_proba(loaded.model, loaded.tokenizer, texts, loaded.max_length, PREDICT_BATCH_SIZE)
        rows = []
        for item, text, p in zip(inputs, texts, probs, strict=True):
            best = int(p.argmax())
            row = {
                "text": text,
                "label": labels[best],
                "confidence": round(float(p[best]), 6),
                "probabilities": {label: round(float(v), 6) for label, v in zip(labels, p, strict=True)},
            }
            rows.append(postprocessed(row, loaded.meta.get("postprocess"), item.get(GROUP_FIELD), labels, p))
        return rows

    def normalize_input(self, item: Any) -> dict[str, Any]:
        """``text``, plus the optional ``group`` a fairness post-processing rule saved with the model reads."""
        out = super().normalize_input(item)
        group = item.get(GROUP_FIELD) if isinstance(item, dict) else None
        if group is not None:
            if not isinstance(group, str) or not group.strip():
                raise InputProblem("bad_group", f"'{GROUP_FIELD}' must be a non-empty string (the input's group)")
            out[GROUP_FIELD] = group
        return out

    # ------------------------------------------------------------------ baselines
    def baselines(
        self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
        max_length: int,
    ) -> dict[str, Any]:
        cfg = recipe.baseline
        if not (cfg.zero_shot or cfg.linear_probe):
            return {}
        encoder = load_pretrained(AutoModel, resolved, recipe.model)
        batch_size = recipe.training.eval_batch

        def embed(texts: list[str]) -> np.ndarray:
            return forward_sorted(encoder, tokenizer, texts, max_length, batch_size, mean_pooled)

        labels = data.labels
        test_y = label_ids(data.test, labels)
        test_emb = embed(list(data.test["text"]))
        result: dict[str, Any] = {}
        if cfg.zero_shot:
            prompts = [label_prompt(label, recipe.data.label_descriptions) for label in labels]
            result["zero_shot"] = zero_shot(test_emb, embed(prompts), test_y, labels)
        if cfg.linear_probe:
            train = _subsample(data.train, cfg.max_train_rows, recipe.data.seed)
            keep = "linear_probe" in recipe.training.keep_best_of and len(data.validation) > 0
            validation = (embed(list(data.validation["text"])), label_ids(data.validation, labels)) if keep else None
            result["linear_probe"] = linear_probe(
                embed(list(train["text"])), label_ids(train, labels), test_emb, test_y, labels, recipe.data.seed,
                validation,
            )
        return result


# ---------------------------------------------------------------------------------------------- helpers

#: the input field naming an input's group, for fairness.postprocess rules saved with the model
GROUP_FIELD = "group"


def postprocessed(row: dict[str, Any], post: dict[str, Any] | None, group: str | None, labels: list[str],
                  probs: np.ndarray) -> dict[str, Any]:
    """``row`` with the saved ThresholdOptimizer rule applied when the input gave its group (fairness/postprocess.py);
    unchanged without a rule or a group. The model's own label is kept beside the decided one."""
    if not post or group is None:
        return row
    from tailorlm.fairness.postprocess import decide

    positive = post["positive_label"]
    negative = next(label for label in labels if label != positive)
    known = group in post["rules"]
    label = positive if decide(post["rules"], float(probs[labels.index(positive)]), group) else negative
    return row | {"label": label, "postprocess": {"group": group, "applied": known, "model_label": row["label"],
                                                  "constraint": post["constraint"]}}


def resolve_max_length(recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> int:
    """``max_length: auto`` = the 99th percentile of training lengths in tokens, within the model's limit."""
    limit = model_token_limit(tokenizer)
    if recipe.training.max_length != "auto":
        return min(int(recipe.training.max_length), limit)
    lengths = [len(ids) for ids in tokenizer(list(data.train["text"]), truncation=False)["input_ids"]]
    p99 = int(np.percentile(lengths, 99)) if lengths else limit
    return max(8, min(limit, -(-p99 // 8) * 8))


def _tokenize(frame: pd.DataFrame, labels: list[str], tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    encoded = tokenizer(list(frame["text"]), truncation=True, max_length=max_length)
    columns = dict(encoded)
    columns["labels"] = label_ids(frame, labels).tolist()
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return Dataset.from_dict(columns)


def _subsample(frame: pd.DataFrame, max_rows: int | None, seed: int) -> pd.DataFrame:
    if max_rows is None or len(frame) <= max_rows:
        return frame
    from sklearn.model_selection import train_test_split

    try:
        kept, _ = train_test_split(frame, train_size=max_rows, stratify=frame["label"], random_state=seed)
    except ValueError:
        kept = frame.sample(n=max_rows, random_state=seed)
    return kept


def most_confident_errors(
    frame: pd.DataFrame, probs: np.ndarray, y_true: np.ndarray, labels: list[str], k: int
) -> list[dict[str, Any]]:
    """The wrong predictions the model was surest of: where a domain expert's eye pays most."""
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[np.argsort(-confidence, kind="stable")][:k]
    rows = frame.reset_index(drop=True)
    return [
        {
            "text": rows.at[i, "text"],
            "label": labels[y_true[i]],
            "predicted": labels[predicted[i]],
            "confidence": float(probs[i, predicted[i]]),
            "source": str(rows.at[i, "source"]) if "source" in rows else None,
            "row": int(rows.at[i, "row"]) if "row" in rows else None,
        }
        for i in order
    ]
