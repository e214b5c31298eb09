"""Extractive question answering (SQuAD v1.1 / v2): a start/end span head on an encoder.

The model reads ``question [SEP] context`` and scores every context token as the start and the end of the
answer. A context longer than ``max_length`` is read in overlapping windows (``qa.doc_stride`` tokens of
overlap), and the best span over all windows of a question is its answer; with SQuAD v2 data the model may also
answer "no answer" (the [CLS] span) when that scores ``qa.null_threshold`` better than the best span.

Metrics are the official SQuAD exact match and F1 on normalised answers (lowercase, no punctuation, no
articles, single spaces), the best over the gold answers of a question, as fractions 0..1 like the other tasks.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForQuestionAnswering,
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    set_seed,
)

from tailorlm.data.pipeline import PreparedData, prepare, require_test
from tailorlm.errors import ModelError
from tailorlm.evaluate.inference import forward_sorted, mean_pooled, model_device, sorted_batches
from tailorlm.models.loading import load_pretrained
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe
from tailorlm.tasks.base import PREDICT_BATCH_SIZE, EncodedSplits, EvalSettings, Task
from tailorlm.tasks.common import model_token_limit, set_dropout
from tailorlm.tasks.qa.data import QARows, load_qa_eval_file
from tailorlm.tasks.qa.span_probe import SPAN_PROBE_MAX_ITER, SpanFeatures, span_probe
from tailorlm.tasks.qa.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.models.saved import LoadedModel

AUTO_MAX_LENGTH = 384  # the SQuAD standard: long enough for most passages in one or two windows
SPAN_PROBE_MAX_QUESTIONS = 1000  # the span probe's training budget: features of at most this many questions
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# ---------------------------------------------------------------------------------------------- SQuAD metrics

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The official SQuAD normalisation: lowercase, drop punctuation and articles, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 of the normalised answers; an empty side (no answer) scores 1 only against empty."""
    pred, true = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not true:
        return float(pred == true)
    common = sum((Counter(pred) & Counter(true)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(true)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) against the closest gold answer; no gold answers means the right answer is "no answer".

    As in the official SQuAD v2.0 script, a gold answer that normalises to nothing (``"the"``, ``"."``) is
    dropped first: kept, it would give an empty prediction full marks on an answerable question.
    """
    golds = [g for g in golds if normalize_answer(g)] or [""]
    return max(exact_match(prediction, g) for g in golds), max(f1_score(prediction, g) for g in golds)


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict[str, float]:
    """exact_match, f1 and n; with unanswerable questions also the HasAns / NoAns split of SQuAD v2."""
    scores = np.array([best_over_golds(p, g) for p, g in zip(predictions, golds, strict=True)]).reshape(-1, 2)
    metrics = {"exact_match": _mean(scores[:, 0]), "f1": _mean(scores[:, 1]), "n": float(len(predictions))}
    has_answer = np.array([bool(len(g)) for g in golds], dtype=bool)
    if len(has_answer) and not has_answer.all():
        for name, mask in (("has_ans", has_answer), ("no_ans", ~has_answer)):
            metrics |= {f"{name}_exact_match": _mean(scores[mask, 0]), f"{name}_f1": _mean(scores[mask, 1]),
                        f"{name}_n": float(mask.sum())}
    return metrics


def per_example_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """EM and F1 of each answer: what paired tests between systems resample (evaluate/stats.py)."""
    return [{"predicted": p, "scores": dict(zip(("exact_match", "f1"), best_over_golds(p, g), strict=True))}
            for p, g in zip(predictions, golds, strict=True)]


def qa_rows(frame: pd.DataFrame, predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> list[dict[str, Any]]:
    """predictions.jsonl rows: the question (as ``text``), its gold answers, the answer and its scores."""
    from tailorlm.evaluate.predictions import row_identity

    rows = frame.reset_index(drop=True)
    return [row_identity(rows, i) | {"text": str(rows.at[i, "question"]), "gold": list(golds[i])} | entry
            for i, entry in enumerate(per_example_scores(predictions, golds))]


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


# ---------------------------------------------------------------------------------------------- windows


@dataclass
class Windows:
    """Tokenized windows of question + context: model inputs, and what maps each back to its question."""

    columns: dict[str, list[Any]]  # input_ids, attention_mask, (token_type_ids), (start/end_positions)
    example: list[int]  # row of the frame each window came from
    offsets: list[list[tuple[int, int] | None]]  # character span of each context token; None elsewhere
    cls: list[int] = field(default_factory=list)  # the "no answer" token of each window

    def __len__(self) -> int:
        return len(self.example)


def _clip_questions(questions: list[str], tokenizer: PreTrainedTokenizerBase, limit: int) -> list[str]:
    """Questions cut to ``limit`` tokens, so that a pathological question cannot leave no room for the context."""
    if not questions:
        return []
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    return [q if len(ids) <= limit else q[: offsets[limit - 1][1]]
            for q, ids, offsets in zip(questions, encoded["input_ids"], encoded["offset_mapping"], strict=True)]


def effective_stride(tokenizer: PreTrainedTokenizerBase, questions: list[str], max_length: int, stride: int) -> int:
    """``qa.doc_stride``, lowered where the longest question leaves too little room for it (the tokenizer refuses
    a stride that does not fit, and windows must advance by at least half their context)."""
    lengths = tokenizer(questions, add_special_tokens=False)["input_ids"] if questions else []
    longest = max((len(ids) for ids in lengths), default=0)
    room = max_length - longest - tokenizer.num_special_tokens_to_add(pair=True)
    return max(1, min(stride, room // 2))


def encode_windows(
    frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, max_length: int, stride: int, labels: bool
) -> Windows:
    """Question + context windows as in transformers' run_qa example; with ``labels``, start/end token positions
    of the first gold answer (the [CLS] token where the answer is not inside the window or there is none)."""
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError("task qa needs a fast tokenizer (for character offsets); use a model that ships "
                         "tokenizer.json")
    if frame.empty:
        return Windows({k: [] for k in ("input_ids", "attention_mask")}, [], [], [])
    questions = _clip_questions([q.strip() for q in frame["question"]], tokenizer, max(1, max_length // 2))
    stride = effective_stride(tokenizer, questions, max_length, stride)
    contexts = list(frame["context"])
    enc = tokenizer(questions, contexts, truncation="only_second", max_length=max_length, stride=stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True, padding=False)
    example = list(enc["overflow_to_sample_mapping"])
    columns: dict[str, list[Any]] = {k: enc[k] for k in MODEL_INPUTS if k in enc}
    offsets, cls_positions, starts, ends = [], [], [], []
    for i, row in enumerate(example):
        sequence_ids = enc.sequence_ids(i)
        offsets.append([tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], sequence_ids,
                                                                     strict=True)])
        ids = enc["input_ids"][i]
        cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        cls_positions.append(cls)
        if labels:
            start, end = _answer_tokens(frame, row, offsets[-1], cls)
            starts.append(start)
            ends.append(end)
    if labels:
        columns |= {"start_positions": starts, "end_positions": ends}
    return Windows(columns, example, offsets, cls_positions)


def _answer_tokens(frame: pd.DataFrame, row: int, offsets: list[tuple[int, int] | None], cls: int) -> tuple[int, int]:
    texts, starts = frame["answer_texts"].iat[row], frame["answer_starts"].iat[row]
    if not len(texts):
        return cls, cls
    start_char = int(starts[0])
    end_char = start_char + len(texts[0])
    inside = [i for i, o in enumerate(offsets) if o is not None]
    if not inside or offsets[inside[0]][0] > start_char or offsets[inside[-1]][1] < end_char:
        return cls, cls
    start = next(i for i in inside if offsets[i][1] > start_char)
    end = next(i for i in reversed(inside) if offsets[i][0] < end_char)
    return start, max(start, end)


def windows_dataset(windows: Windows) -> Dataset:
    return Dataset.from_dict(windows.columns | {"length": [len(ids) for ids in windows.columns["input_ids"]]})


@torch.inference_mode()
def window_logits(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, windows: Windows, batch_size: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of every window, in length-sorted batches (little padding), in window order."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    lengths = [len(ids) for ids in windows.columns["input_ids"]]
    starts: list[np.ndarray] = [np.zeros(0)] * len(windows)
    ends: list[np.ndarray] = [np.zeros(0)] * len(windows)
    for batch_idx in sorted_batches(lengths, batch_size):
        features = [{k: windows.columns[k][i] for k in MODEL_INPUTS if k in windows.columns} for i in batch_idx]
        batch = {k: v.to(device) for k, v in tokenizer.pad(features, return_tensors="pt").items()}
        outputs = model(**batch)
        s, e = outputs.start_logits.float().cpu().numpy(), outputs.end_logits.float().cpu().numpy()
        for j, i in enumerate(batch_idx):
            starts[i], ends[i] = s[j, : lengths[i]], e[j, : lengths[i]]
    model.train(was_training)
    return starts, ends


# ---------------------------------------------------------------------------------------------- post-processing


@dataclass
class Answer:
    text: str
    start: int  # character offset in the context; -1 for "no answer"
    score: float  # start + end logit of the chosen span (the null score when no answer)
    null_score: float
    confidence: float  # softmax of the chosen score over the n-best candidates (and the null answer)


def postprocess(
    starts: Sequence[np.ndarray],
    ends: Sequence[np.ndarray],
    windows: Windows,
    contexts: Sequence[str],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    null_threshold: float = 0.0,
    allow_null: bool = False,
) -> list[Answer]:
    """The best answer per question: n-best starts x n-best ends of each window, mapped back to characters,
    best over all windows of a question; "no answer" (v2) when the best null score beats it by the threshold."""
    by_example: dict[int, list[int]] = {}
    for w, row in enumerate(windows.example):
        by_example.setdefault(row, []).append(w)
    answers = []
    for row, context in enumerate(contexts):
        candidates: list[tuple[float, int, int]] = []
        null = float("inf")
        for w in by_example.get(row, []):
            s, e, offsets, cls = starts[w], ends[w], windows.offsets[w], windows.cls[w]
            null = min(null, float(s[cls] + e[cls]))
            candidates += _window_spans(s, e, offsets, n_best, max_answer_length)
        answers.append(_choose(candidates, null, context, n_best, null_threshold, allow_null))
    return answers


def _window_spans(s: np.ndarray, e: np.ndarray, offsets: list[tuple[int, int] | None], n_best: int,
                  max_answer_length: int) -> list[tuple[float, int, int]]:
    """(score, start char, end char) of the valid spans among the n-best start and end tokens of one window."""
    spans = []
    n = min(len(offsets), len(s))
    for i in np.argsort(s[:n])[::-1][:n_best]:
        for j in np.argsort(e[:n])[::-1][:n_best]:
            if offsets[i] is None or offsets[j] is None or j < i or j - i + 1 > max_answer_length:
                continue
            spans.append((float(s[i] + e[j]), offsets[i][0], offsets[j][1]))
    return spans


def _choose(candidates: list[tuple[float, int, int]], null: float, context: str, n_best: int, threshold: float,
            allow_null: bool) -> Answer:
    candidates = sorted(candidates, reverse=True)[:n_best]
    scores = np.array([c[0] for c in candidates] + ([null] if allow_null and np.isfinite(null) else []))
    probs = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum() if len(scores) else scores
    null = null if np.isfinite(null) else 0.0
    if not candidates or (allow_null and null - candidates[0][0] > threshold):
        return Answer("", -1, null, null, float(probs[-1]) if allow_null and len(probs) else 0.0)
    score, start, end = candidates[0]
    return Answer(context[start:end], start, score, null, float(probs[0]))


def window_span_metrics(start_logits: np.ndarray, end_logits: np.ndarray, gold_start: np.ndarray,
                        gold_end: np.ndarray, max_answer_length: int) -> dict[str, float]:
    """Per-window exact match and token F1 of the best (start <= end) span against the labelled span.

    Used during training: the Trainer may reorder validation windows (length-grouped), so it cannot map windows
    back to their questions; a per-window score needs no mapping and ranks checkpoints as the real one does.
    Position 0 ([CLS]) is "no answer"; padding logits are -100, so they are never chosen.
    """
    em, f1 = [], []
    n = start_logits.shape[1] if start_logits.ndim == 2 else 0
    band = np.triu(np.ones((n, n), dtype=bool)) & ~np.triu(np.ones((n, n), dtype=bool), k=max_answer_length)
    if n:
        band[0, :] = band[:, 0] = False
    for s, e, gs, ge in zip(start_logits, end_logits, gold_start, gold_end, strict=True):
        scores = s[:, None] + e[None, :]
        best = np.unravel_index(np.argmax(np.where(band, scores, -np.inf)), scores.shape) if n > 1 else (0, 0)
        ps, pe = (0, 0) if n <= 1 or s[0] + e[0] > scores[best] else (int(best[0]), int(best[1]))
        if (gs, ge) == (0, 0) or (ps, pe) == (0, 0):
            hit = float((gs, ge) == (ps, pe))
            em.append(hit)
            f1.append(hit)
            continue
        overlap = max(0, min(pe, ge) - max(ps, gs) + 1)
        em.append(float((ps, pe) == (gs, ge)))
        f1.append(0.0 if overlap == 0 else 2 * overlap / ((pe - ps + 1) + (ge - gs + 1)))
    return {"exact_match": _mean(np.array(em)), "f1": _mean(np.array(f1))}


# ---------------------------------------------------------------------------------------------- the task


class QATask(Task):
    spec = SPEC
    input_fields = ("question", "context")

    # ------------------------------------------------------------------ data
    def prepare_data(self, recipe: Recipe, count_tokens: Callable[[list[str]], list[int]] | None) -> PreparedData:
        data = prepare(recipe.data, QARows(), count_tokens)
        require_test(data, recipe.data, "questions")
        qa = recipe.qa
        data.settings = {"doc_stride": qa.doc_stride, "n_best": qa.n_best, "max_answer_length": qa.max_answer_length,
                         "null_threshold": qa.null_threshold, "version_2": data.version_2}
        return data

    def encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        max_length = resolve_qa_max_length(recipe, tokenizer)
        questions = [*data.train["question"], *data.validation["question"], *data.test["question"]]
        stride = effective_stride(tokenizer, _clip_questions(questions, tokenizer, max(1, max_length // 2)),
                                  max_length, recipe.qa.doc_stride)
        train = encode_windows(data.train, tokenizer, max_length, stride, labels=True)
        validation = encode_windows(data.validation, tokenizer, max_length, stride, labels=True)
        stats = {"doc_stride": stride, "train_windows": len(train), "validation_windows": len(validation)}
        return EncodedSplits(train=windows_dataset(train), validation=windows_dataset(validation) if len(validation)
                             else None, max_length=max_length, stats=stats)

    def after_encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase,
                     encoded: EncodedSplits) -> None:
        data.settings["doc_stride"] = encoded.stats["doc_stride"]  # evaluation cuts test contexts the same way

    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        return DataCollatorWithPadding(tokenizer)

    # ------------------------------------------------------------------ model
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> PreTrainedModel:
        """The encoder with a fresh span head, initialised from ``training.seed``: the Trainer seeds only after the
        model exists, and with a few hundred questions the head's initial weights visibly move the result."""
        config = load_pretrained(AutoConfig, resolved, recipe.model)
        set_dropout(config, recipe.training.dropout, recipe.training.attention_dropout)
        set_seed(recipe.training.seed)
        return load_pretrained(AutoModelForQuestionAnswering, resolved, recipe.model, config=config)

    def model_meta(self, data: PreparedData) -> dict[str, Any]:
        return dict(data.settings)

    # ------------------------------------------------------------------ metrics
    def compute_metrics(self, data: PreparedData) -> Callable:
        max_answer_length = int(data.settings.get("max_answer_length", 30))

        def compute(eval_pred: Any) -> dict[str, float]:
            start_logits, end_logits = eval_pred.predictions[:2]
            gold_start, gold_end = eval_pred.label_ids
            return window_span_metrics(start_logits, end_logits, gold_start, gold_end, max_answer_length)

        return compute

    def predict_answers(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, meta: dict[str, Any],
        max_length: int, batch_size: int,
    ) -> list[Answer]:
        """The answer to every question of ``frame`` (columns question, context)."""
        windows = encode_windows(frame, tokenizer, max_length, int(meta.get("doc_stride", 128)), labels=False)
        starts, ends = window_logits(model, tokenizer, windows, batch_size)
        return postprocess(
            starts, ends, windows, list(frame["context"]), n_best=int(meta.get("n_best", 20)),
            max_answer_length=int(meta.get("max_answer_length", 30)),
            null_threshold=float(meta.get("null_threshold", 0.0)), allow_null=bool(meta.get("version_2", False)),
        )

    def evaluate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, meta: dict[str, Any],
        settings: EvalSettings,
    ) -> dict[str, Any]:
        answers = self.predict_answers(model, tokenizer, frame, meta, settings.max_length, settings.batch_size)
        predicted = [a.text for a in answers]
        golds = [list(g) for g in frame["answer_texts"]]
        return {"metrics": squad_metrics(predicted, golds),
                "errors": worst_answers(frame, answers, settings.top_errors),
                "predictions": qa_rows(frame, predicted, golds)}  # predictions.jsonl (evaluate/predictions.py)

    def predict(self, loaded: LoadedModel, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The answer span of each question in its context, with the saved windowing and no-answer settings.

        ``score`` is the answer's softmax share among the n-best spans (and "no answer" for a SQuAD v2 model);
        ``start`` is its character offset in the context (None when there is no answer)."""
        frame = pd.DataFrame({"question": [item["question"] for item in inputs],
                              "context": [item["context"] for item in inputs]})
        answers = self.predict_answers(loaded.model, loaded.tokenizer, frame, loaded.meta, loaded.max_length,
                                       PREDICT_BATCH_SIZE)
        return [{"answer": a.text, "score": round(a.confidence, 6), "start": a.start if a.text else None,
                 "no_answer": not a.text} for a in answers]

    def load_eval_file(self, path: Any, meta: dict[str, Any], columns: dict[str, str],
                       clean: bool = False) -> tuple[pd.DataFrame, list]:
        """``tailor eval --data``: SQuAD JSON or rows with question, context, answers (the text options are
        classification's and do not apply). A question asked twice is scored once (its id keys the answer), with
        or without ``clean``."""
        return load_qa_eval_file(path)

    # ------------------------------------------------------------------ baselines
    def baselines(
        self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
        max_length: int,
    ) -> dict[str, Any]:
        """Before tuning, on the test questions:

        - ``span_probe`` (baseline.linear_probe): the reference, QA's linear probe. A linear start/end head trained
          on the frozen features of the pretrained body (``span_probe_answers``), decoded like the tuned model;
        - ``pretrained_head`` (baseline.linear_probe): a floor, the pretrained body with its fresh, untrained head;
        - ``sentence_retrieval`` (baseline.zero_shot): the context sentence closest to the question in the
          pretrained embedding space, answered whole. It never answers "no answer", so with SQuAD v2 data (which
          has unanswerable questions) it is a floor; on v1 data it is a crude but real heuristic and stays a
          reference (on 488 real SQuAD v1.1 questions its F1, 0.120, beat the span probe's 0.078: calling it a
          floor there would inflate the headline gain).

        Floors are reported and marked (evaluate/floors.py) but never the bar the tuned model is measured against."""
        cfg = recipe.baseline
        batch_size = recipe.training.eval_batch
        golds = [list(g) for g in data.test["answer_texts"]]
        result: dict[str, Any] = {}
        if cfg.zero_shot:
            encoder = load_pretrained(AutoModel, resolved, recipe.model)
            predicted = sentence_retrieval(encoder, tokenizer, data.test, max_length, batch_size)
            floor = bool(data.version_2)
            result["sentence_retrieval"] = _scored(predicted, golds, "the context sentence with the highest cosine "
                                                   "to the question (mean-pooled pretrained embeddings), answered "
                                                   "whole; never \"no answer\"" + (
                                                       " (a floor: it scores 0 on every unanswerable question)"
                                                       if floor else "")) | {"floor": floor}
        if cfg.linear_probe:
            set_seed(recipe.training.seed)  # the same fresh head as the model that will be tuned
            model = load_pretrained(AutoModelForQuestionAnswering, resolved, recipe.model)
            meta = self.model_meta(data)
            answers = self.predict_answers(model, tokenizer, data.test, meta, max_length, batch_size)
            result["pretrained_head"] = _scored([a.text for a in answers], golds, "the pretrained encoder with its "
                                                "randomly initialised span head, untrained (a floor)")
            result["span_probe"] = self._span_probe(model, tokenizer, data, meta, max_length, batch_size,
                                                    cfg.max_train_rows, recipe.data.seed)
        return result

    def _span_probe(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, data: PreparedData,
                    meta: dict[str, Any], max_length: int, batch_size: int, max_rows: int | None,
                    seed: int) -> dict[str, Any]:
        """Fit a linear span head on frozen features of the training questions, put it in the model's head, answer
        the test questions with the same windows and n-best decoding as the tuned model."""
        head = getattr(model, "qa_outputs", None)
        if not isinstance(head, torch.nn.Linear) or head.out_features != 2:
            return {"skipped": f"{type(model).__name__} has no linear qa_outputs span head to probe"}
        cap = min(max_rows or SPAN_PROBE_MAX_QUESTIONS, SPAN_PROBE_MAX_QUESTIONS)
        train = data.train.sample(n=cap, random_state=seed) if len(data.train) > cap else data.train
        windows = encode_windows(train, tokenizer, max_length, int(meta.get("doc_stride", 128)), labels=True)
        if not len(windows):
            return {"skipped": "no training questions to fit the span probe on"}
        features = SpanFeatures(head_inputs(model, head, tokenizer, windows, batch_size),
                                list(windows.columns["start_positions"]), list(windows.columns["end_positions"]),
                                list(windows.example))
        weight, penalty = span_probe(features, seed)
        with torch.no_grad():
            head.weight.copy_(weight.T.to(head.weight.dtype))
            head.bias.zero_()  # a bias cancels in every start/end softmax and in the span-vs-null comparison
        answers = self.predict_answers(model, tokenizer, data.test, meta, max_length, batch_size)
        return _scored([a.text for a in answers], [list(g) for g in data.test["answer_texts"]],
                       f"a linear start/end head (the tuned model's head shape) trained on the frozen pretrained "
                       f"features of {len(train)} training questions ({len(windows)} windows), L2 {penalty:g} chosen "
                       f"on held-out questions, L-BFGS <= {SPAN_PROBE_MAX_ITER} steps; decoded like the tuned model")


def _scored(predicted: list[str], golds: list[list[str]], method: str) -> dict[str, Any]:
    """A QA baseline's metrics.json entry: SQuAD scores, per-example scores (for the paired tests), how it was made."""
    return squad_metrics(predicted, golds) | {"per_example": per_example_scores(predicted, golds), "method": method}


@torch.no_grad()
def head_inputs(model: PreTrainedModel, head: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, windows: Windows,
                batch_size: int) -> list[torch.Tensor]:
    """What ``head`` reads for every token of every window (a forward pre-hook), in window order, as float32 on the
    CPU: the frozen features a span probe is fitted on, whatever the architecture puts before its span head."""
    device = model_device(model)
    was_training = model.training
    model.eval()
    captured: list[torch.Tensor] = []
    hook = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    lengths = [len(ids) for ids in windows.columns["input_ids"]]
    features: list[torch.Tensor] = [torch.zeros(0)] * len(windows)
    try:
        for batch_idx in sorted_batches(lengths, batch_size):
            batch = [{k: windows.columns[k][i] for k in MODEL_INPUTS if k in windows.columns} for i in batch_idx]
            model(**{k: v.to(device) for k, v in tokenizer.pad(batch, return_tensors="pt").items()})
            states = captured.pop().float().cpu()
            for j, i in enumerate(batch_idx):
                features[i] = states[j, : lengths[i]].clone()
    finally:
        hook.remove()
        model.train(was_training)
    return features


# ---------------------------------------------------------------------------------------------- helpers

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")


def split_sentences(context: str) -> list[str]:
    """Sentences of a passage (ending at . ! ? or a line break), stripped; the whole passage when it has none."""
    sentences = [m.group().strip() for m in _SENTENCE.finditer(context)]
    return [s for s in sentences if s] or [context.strip()]


def sentence_retrieval(
    encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, max_length: int,
    batch_size: int,
) -> list[str]:
    """For each question, the context sentence with the highest cosine to it (mean-pooled embeddings)."""
    sentences = [split_sentences(c) for c in frame["context"]]
    unique = list(dict.fromkeys(s for group in sentences for s in group))
    index = {s: i for i, s in enumerate(unique)}

    def embed(texts: list[str]) -> np.ndarray:
        return forward_sorted(encoder, tokenizer, texts, max_length, batch_size, mean_pooled)

    questions, pool = embed(list(frame["question"])), embed(unique)
    return [group[int(np.argmax(pool[[index[s] for s in group]] @ q))] for q, group in zip(questions, sentences,
                                                                                              strict=True)]


def resolve_qa_max_length(recipe: Recipe, tokenizer: PreTrainedTokenizerBase) -> int:
    """``max_length: auto`` is 384 tokens (SQuAD's standard window), within the model's limit."""
    limit = model_token_limit(tokenizer)
    wanted = AUTO_MAX_LENGTH if recipe.training.max_length == "auto" else int(recipe.training.max_length)
    return max(32, min(wanted, limit))


def worst_answers(frame: pd.DataFrame, answers: list[Answer], k: int) -> list[dict[str, Any]]:
    """The questions answered worst (lowest F1), the most confident first: where a domain expert's eye pays."""
    rows = frame.reset_index(drop=True)
    scored = []
    for i, answer in enumerate(answers):
        golds = list(rows.at[i, "answer_texts"])
        em, f1 = best_over_golds(answer.text, golds)
        if em < 1.0:
            scored.append((f1, -answer.confidence, i, golds, answer))
    scored.sort(key=lambda t: (t[0], t[1]))
    return [
        {
            "text": rows.at[i, "question"],
            "label": golds[0] if golds else "(no answer)",
            "predicted": answer.text or "(no answer)",
            "confidence": answer.confidence,
            "f1": round(f1, 4),
            "context": rows.at[i, "context"][:300],
            "source": str(rows.at[i, "source"]) if "source" in rows else None,
            "row": int(rows.at[i, "row"]) if "row" in rows else None,
        }
        for f1, _, i, golds, answer in scored[:k]
    ]
