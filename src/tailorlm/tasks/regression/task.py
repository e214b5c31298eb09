"""Regression: a float target per text (or text pair), one linear output on an encoder, MSE or Huber loss.

The head is transformers' sequence-classification head with one output (``problem_type: regression``), so
saving, loading, LoRA and serving are those of any Hub regression model (STS-B cross-encoders). Text pairs on a
sentence-embedding model are scored as a bi-encoder instead (``regression.pair_encoding``, bi_encoder.py): each
text embedded alone, a line of their cosine. Metrics: RMSE (the main metric and checkpoint choice, lower is
better), MAE, Pearson and Spearman. Baselines: predicting the training mean (a floor), ridge regression on frozen
mean-pooled embeddings (a reference; for pairs the sentence-BERT features u, v, |u - v|, u * v) and, for pairs,
the frozen embeddings' cosine with a line fitted on the training pairs (the reference a sentence-transformers user
tries first).
"""

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
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from tailorlm.data.pipeline import PreparedData, prepare, require_test
from tailorlm.evaluate.inference import forward_sorted, logits_of, mean_pooled
from tailorlm.evaluate.predictions import row_identity
from tailorlm.models.loading import load_pretrained, load_tokenizer
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe
from tailorlm.tasks.base import PREDICT_BATCH_SIZE, EncodedSplits, EvalSettings, Task
from tailorlm.tasks.common import model_token_limit, set_dropout
from tailorlm.tasks.regression import bi_encoder
from tailorlm.tasks.regression.bi_encoder import CosineSimilarityRegressor, PairCollator
from tailorlm.tasks.regression.data import RegressionRows, load_scored_file
from tailorlm.tasks.regression.metrics import per_example_errors, regression_metrics
from tailorlm.tasks.regression.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.models.saved import LoadedModel

#: ridge penalties tried by leave-one-out cross-validation for the embedding baseline
RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def _pairs(frame: pd.DataFrame) -> list[str] | None:
    if "pair" not in frame or frame["pair"].isna().all():
        return None
    return [str(p) for p in frame["pair"]]


class RegressionTask(Task):
    spec = SPEC
    input_fields = ("text",)

    def loss_kind(self, recipe: Recipe) -> str:
        return recipe.regression.loss

    def resolve_auto(self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel) -> dict[str, Any]:
        """``regression.pair_encoding: auto`` for text pairs: the bi-encoder for a sentence-embedding model."""
        from tailorlm.train.auto import Choice

        if recipe.regression.pair_encoding != "auto" or _pairs(data.train) is None:
            return {}
        if recipe.model.peft.method != "none":
            choice = Choice("cross_encoder", "LoRA is on; the bi-encoder fine-tunes the whole encoder")
        elif bi_encoder.is_sentence_embedding_model(resolved):
            choice = Choice("bi_encoder", "a sentence-embedding model: its cosine already measures similarity")
        else:
            choice = Choice("cross_encoder", "not a sentence-transformers model: both texts in one input")
        recipe.regression.pair_encoding = choice.value
        return {"regression.pair_encoding": choice}

    # ------------------------------------------------------------------ data
    def prepare_data(self, recipe: Recipe, count_tokens: Callable[[list[str]], list[int]] | None) -> PreparedData:
        data = prepare(recipe.data, RegressionRows(recipe.data.text_pair_column), count_tokens)
        require_test(data, recipe.data, "rows")
        return data

    def encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        separately = _bi_encoded(recipe, data)
        max_length = _max_length(recipe, data, tokenizer, separately)
        train = _tokenize(data.train, tokenizer, max_length, separately)
        validation = _tokenize(data.validation, tokenizer, max_length, separately) if len(data.validation) else None
        return EncodedSplits(train=train, validation=validation, max_length=max_length)

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        return PairCollator(tokenizer)

    # ------------------------------------------------------------------ model
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> PreTrainedModel:
        if _bi_encoded(recipe, data):
            return _build_bi_encoder(resolved, recipe, data)
        config = load_pretrained(AutoConfig, resolved, recipe.model, num_labels=1)
        config.problem_type = "regression"
        set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
        model = load_pretrained(AutoModelForSequenceClassification, resolved, recipe.model, config=config)
        start_at_the_mean(model, float(data.train["target"].mean()))
        return model

    def model_meta(self, data: PreparedData) -> dict[str, Any]:
        return {"pair": _pairs(data.train) is not None, "target": "target",
                "target_range": [float(data.train["target"].min()), float(data.train["target"].max())]}

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self, data: PreparedData) -> Callable:
        def compute(eval_pred: Any) -> dict[str, float]:
            predictions = eval_pred.predictions
            if isinstance(predictions, tuple):
                predictions = predictions[0]
            metrics = regression_metrics(eval_pred.label_ids, np.asarray(predictions).reshape(-1))
            return {k: v for k, v in metrics.items() if k != "n"}

        return compute

    def predict_values(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                       pairs: list[str] | None, max_length: int, batch_size: int) -> np.ndarray:
        if isinstance(model, CosineSimilarityRegressor):
            if pairs is None:
                raise ValueError("a bi-encoder scores text pairs; no second texts were given")
            return model.predict(tokenizer, texts, pairs, max_length, batch_size)
        out = forward_sorted(model, tokenizer, texts, max_length, batch_size, logits_of, pairs=pairs)
        return out.reshape(-1).astype(np.float64)

    def evaluate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame,
                 meta: dict[str, Any], settings: EvalSettings) -> dict[str, Any]:
        y_true = frame["target"].to_numpy(dtype=np.float64)
        y_pred = self.predict_values(model, tokenizer, list(frame["text"]), _pairs(frame), settings.max_length,
                                     settings.batch_size)
        rows = frame.reset_index(drop=True)
        predictions = [row_identity(rows, i) | {"text": str(rows.at[i, "text"]), "gold": float(y_true[i])} | entry
                       for i, entry in enumerate(per_example_errors(y_true, y_pred))]
        order = np.argsort(-np.abs(y_pred - y_true), kind="stable")[: settings.top_errors]
        errors = [{"text": str(rows.at[int(i), "text"]), "target": float(y_true[i]),
                   "predicted": round(float(y_pred[i]), 4)} for i in order]
        return {"metrics": regression_metrics(y_true, y_pred), "errors": errors, "predictions": predictions}

    def load_eval_file(self, path: Any, meta: dict[str, Any], columns: dict[str, str],
                       clean: bool = False) -> tuple[pd.DataFrame, list]:
        """Every scorable row, as ``Task.load_eval_file`` has it; ``clean`` also drops what a test split lost."""
        from tailorlm.data.clean import saved_cleaning
        from tailorlm.recipe import DataConfig

        pair_column = columns.pop("text_pair_column", None) or ("sentence2" if meta.get("pair") else None)
        cleaning = saved_cleaning(meta)
        if not clean:
            cleaning = cleaning.model_copy(update={"min_chars": 1, "max_chars": None})
        cfg = DataConfig(train=str(path), clean=cleaning, **columns)
        return load_scored_file(path, cfg, pair_column, dedupe=clean)

    # ------------------------------------------------------------------ predict
    def normalize_input(self, item: Any) -> dict[str, Any]:
        """``text``, plus ``text_pair`` for a model trained on pairs (checked by ``predict``)."""
        out = super().normalize_input(item)
        pair = item.get("text_pair") if isinstance(item, dict) else None
        if pair is not None:
            out["text_pair"] = self._field_value("text_pair", "text_pair", pair)
        return out

    def predict(self, loaded: LoadedModel, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from tailorlm.data.clean import clean_text
        from tailorlm.errors import UserError

        paired = bool(loaded.meta.get("pair"))
        if paired and any("text_pair" not in item for item in inputs):
            raise UserError('this model scores text pairs: give each input a "text_pair" as well as a "text"')
        texts = [clean_text(item["text"], loaded.clean) for item in inputs]
        pairs = [clean_text(item["text_pair"], loaded.clean) for item in inputs] if paired else None
        values = self.predict_values(loaded.model, loaded.tokenizer, texts, pairs, loaded.max_length,
                                     PREDICT_BATCH_SIZE)
        return [{"text": text, **({"text_pair": pairs[i]} if pairs else {}), "score": round(float(v), 6)}
                for i, (text, v) in enumerate(zip(texts, values, strict=True))]

    # ------------------------------------------------------------------ baselines
    def baselines(self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel,
                  tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict[str, Any]:
        train_y = data.train["target"].to_numpy(dtype=np.float64)
        test_y = data.test["target"].to_numpy(dtype=np.float64)
        mean = np.full_like(test_y, float(train_y.mean()))
        result: dict[str, Any] = {"mean": regression_metrics(test_y, mean) | {
            "per_example": per_example_errors(test_y, mean),
            "method": f"every test row gets the training mean ({train_y.mean():.4g})"}}
        paired = _pairs(data.train) is not None
        if recipe.baseline.linear_probe or (paired and recipe.baseline.zero_shot):
            encoder = load_pretrained(AutoModel, resolved, recipe.model)
        if recipe.baseline.linear_probe:
            result["ridge_probe"] = ridge_probe(encoder, tokenizer, data, max_length, recipe.training.eval_batch)
        if paired and recipe.baseline.zero_shot:
            result["cosine"] = cosine_baseline(encoder, tokenizer, data, max_length, recipe.training.eval_batch)
        return result


def start_at_the_mean(model: PreTrainedModel, mean: float) -> None:
    """The output layer's bias set to the training mean: the untrained head is the mean predictor, not 0, so a
    target far from 0 (scores 0-5) costs no steps at a fine-tuning learning rate to reach its level."""
    import torch

    outputs = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 1]
    if outputs and outputs[-1].bias is not None:
        with torch.no_grad():
            outputs[-1].bias.fill_(mean)


def _bi_encoded(recipe: Recipe, data: PreparedData) -> bool:
    """Pairs scored by the bi-encoder; ``auto`` unresolved (a multi-task unit) stays the cross-encoder."""
    return recipe.regression.pair_encoding == "bi_encoder" and _pairs(data.train) is not None


def _build_bi_encoder(resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> CosineSimilarityRegressor:
    """The encoder under a line fitted to its untrained cosines: before any step it scores like the cosine
    baseline, so fine-tuning starts from what the embedding model already knows."""
    config = load_pretrained(AutoConfig, resolved, recipe.model)
    set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
    encoder = load_pretrained(AutoModel, resolved, recipe.model, config=config)
    sample = data.train.sample(n=min(len(data.train), bi_encoder.LINE_FIT_ROWS), random_state=recipe.training.seed)
    tokenizer = load_tokenizer(resolved, recipe.model)
    scale, shift = bi_encoder.cosine_line(encoder, tokenizer, list(sample["text"]), _pairs(sample) or [],
                                          sample["target"].to_numpy(dtype=np.float64),
                                          _max_length(recipe, data, tokenizer, True), recipe.training.eval_batch)
    return CosineSimilarityRegressor(encoder, scale, shift)


def cosine_baseline(encoder: Any, tokenizer: PreTrainedTokenizerBase, data: PreparedData, max_length: int,
                    batch_size: int) -> dict[str, Any]:
    """The frozen embeddings' cosine of each pair, mapped to the target by a least-squares line on train."""
    train, test = data.train, data.test
    scale, shift = bi_encoder.cosine_line(encoder, tokenizer, list(train["text"]), _pairs(train) or [],
                                          train["target"].to_numpy(dtype=np.float64), max_length, batch_size)
    test_y = test["target"].to_numpy(dtype=np.float64)
    predicted = scale * bi_encoder.cosines(encoder, tokenizer, list(test["text"]), _pairs(test) or [], max_length,
                                           batch_size) + shift
    return regression_metrics(test_y, predicted) | {
        "per_example": per_example_errors(test_y, predicted),
        "method": f"cosine similarity of the frozen pretrained embeddings of both texts, mapped by the line "
                  f"{scale:.3g} * cos + {shift:.3g} fitted on {len(data.train)} training pairs"}


def ridge_probe(encoder: Any, tokenizer: PreTrainedTokenizerBase, data: PreparedData, max_length: int,
                batch_size: int) -> dict[str, Any]:
    """Ridge regression on frozen mean-pooled embeddings, the penalty chosen by leave-one-out CV on train."""
    from sklearn.linear_model import RidgeCV

    def features(frame: pd.DataFrame) -> np.ndarray:
        u = forward_sorted(encoder, tokenizer, list(frame["text"]), max_length, batch_size, mean_pooled)
        pairs = _pairs(frame)
        if pairs is None:
            return u
        v = forward_sorted(encoder, tokenizer, pairs, max_length, batch_size, mean_pooled)
        return np.hstack([u, v, np.abs(u - v), u * v])

    train_y = data.train["target"].to_numpy(dtype=np.float64)
    test_y = data.test["target"].to_numpy(dtype=np.float64)
    probe = RidgeCV(alphas=RIDGE_ALPHAS).fit(features(data.train), train_y)
    predicted = probe.predict(features(data.test))
    return regression_metrics(test_y, predicted) | {
        "per_example": per_example_errors(test_y, predicted),
        "method": f"ridge regression (alpha={float(probe.alpha_):g}) on frozen mean-pooled pretrained embeddings "
                  f"of {len(train_y)} training rows"}


def _max_length(recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase,
                separately: bool = False) -> int:
    """The 99th percentile of the training inputs' lengths (each text alone when a bi-encoder reads them)."""
    limit = model_token_limit(tokenizer)
    if recipe.training.max_length != "auto":
        return min(int(recipe.training.max_length), limit)
    pairs = _pairs(data.train)
    texts = list(data.train["text"])
    if separately and pairs:
        encoded = tokenizer(texts + pairs, truncation=False)
    else:
        encoded = tokenizer(texts, pairs, truncation=False) if pairs else tokenizer(texts, truncation=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    p99 = int(np.percentile(lengths, 99)) if lengths else limit
    return max(8, min(limit, -(-p99 // 8) * 8))


def _tokenize(frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int,
              separately: bool = False) -> Dataset:
    pairs = _pairs(frame)
    texts = list(frame["text"])
    if separately and pairs:
        columns = bi_encoder.tokenize_separately(tokenizer, texts, pairs, max_length)
    else:
        encoded = (tokenizer(texts, pairs, truncation=True, max_length=max_length) if pairs
                   else tokenizer(texts, truncation=True, max_length=max_length))
        columns = dict(encoded) | {"length": [len(ids) for ids in encoded["input_ids"]]}
    columns["labels"] = frame["target"].astype(float).tolist()
    return Dataset.from_dict(columns)

