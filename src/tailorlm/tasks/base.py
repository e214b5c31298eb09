"""The Task object: everything that differs between kinds of data, so the trainer never switches on a name.

A task says how to read and validate its data, how to tokenize it, which model class and collator to use, which
metrics to compute, what baseline to measure before tuning, and how to evaluate and predict after. The pipeline
(``tailorlm.run``), the trainer and ``tailor eval`` call these methods; ``tailor predict`` and ``tailor serve`` call
``normalize_input`` and ``predict``. Its facts (name, default model, metrics, head type) come from its
:class:`~tailorlm.tasks.spec.TaskSpec`, so they are stated once. Adding a task is one package ``tasks/<name>/``
(``spec.py``, ``task.py``) plus its line in ``tailorlm.tasks.TASK_SPECS``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tailorlm.data.pipeline import PreparedData
from tailorlm.errors import UserError
from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe
from tailorlm.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import numpy as np

    from tailorlm.models.saved import LoadedModel

TokenCounter = Callable[[list[str]], list[int]]
#: inputs per forward pass in ``predict``: small enough for a CPU, large enough to amortise padding
PREDICT_BATCH_SIZE = 32


class CapabilityMissing(NotImplementedError):
    """A method a task offers only with a capability its spec lacks (``proba``): a caller should have asked
    ``spec.has(...)`` first. Not a stub: the refusal is the behaviour for tasks without the capability."""


class InputProblem(ValueError):
    """One prediction input cannot be used: ``reason`` is a short code (``missing_question``), ``detail`` says why.

    Not a UserError: a file row with a problem becomes an error entry in the output, while an inline input
    (``--text``, an HTTP request) turns it into a one-line error; the caller decides.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class EncodedSplits:
    """Tokenized splits ready for the Trainer (``length`` column for length-grouped batching)."""

    train: Dataset
    validation: Dataset | None
    max_length: int
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class EvalSettings:
    """How to evaluate: the same for the test split of a run and for ``tailor eval`` on any file."""

    max_length: int
    batch_size: int = 64
    top_errors: int = 20


class Task(ABC):
    """One kind of learning problem (classification, QA, generation, ...)."""

    #: the task's facts, stated once in ``tasks/<name>/spec.py``; the properties below read them
    spec: ClassVar[TaskSpec]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def peft_task_type(self) -> str:
        """peft's TaskType for LoRA (e.g. "SEQ_CLS"), so the task head stays trainable."""
        return self.spec.peft_task_type

    @property
    def auto_model_class(self) -> Any:
        """The transformers Auto class that builds and reloads a model of this task."""
        return self.spec.auto_class()

    @property
    def default_model(self) -> str | None:
        """The model used when the recipe names none (a shipped alias, so it works offline)."""
        return self.spec.default_model

    @property
    def model_hint(self) -> str | None:
        return self.spec.model_hint

    def loss_kind(self, recipe: Recipe) -> str:
        """How train/objective.py computes this head's loss per example (``LOSS_KIND`` of its peft task type)."""
        from tailorlm.train.objective import LOSS_KIND

        return LOSS_KIND[self.peft_task_type]

    @property
    def default_metric(self) -> str:
        """The validation metric that picks the best checkpoint unless the recipe says otherwise."""
        return self.spec.select_metric.name

    @property
    def greater_is_better(self) -> bool:
        """Whether a larger value of ``default_metric`` is better."""
        return self.spec.select_metric.greater_is_better

    #: the keys every ``predict`` input must have (``tailor predict``, ``tailor serve``); empty: cannot predict
    input_fields: tuple[str, ...] = ()
    #: other keys accepted in place of a required one, ``{alias: field}`` (e.g. ``{"source": "text"}``)
    input_aliases: dict[str, str] = {}  # noqa: RUF012 (read-only class data)
    #: keys whose value may be a list of strings instead of one string (token-classification's ``tokens``)
    list_inputs: frozenset[str] = frozenset()

    # ------------------------------------------------------------------ data
    @abstractmethod
    def prepare_data(self, recipe: Recipe, count_tokens: TokenCounter | None) -> PreparedData:
        """Load, clean, validate and split the recipe's data: ``data.pipeline.prepare`` with the task's row spec
        (``train``, ``validation``, ``test`` frames, ``rejects`` and ``report``); rejected rows carry their reason."""

    def resolve_auto(self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel) -> dict[str, Any]:
        """Fill this task's own ``auto`` keys once the data is prepared (before tokenising, which reads them);
        ``{key: train.auto.Choice}`` for the record. Most tasks have none."""
        return {}

    @abstractmethod
    def encode(self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        """Tokenize train and validation for the Trainer.

        Its result may be cached (``data/token_cache.py``) and reused by a later run, so anything else it decides
        (a decoder's target length, QA's stride) must go in ``EncodedSplits.stats`` and be applied in
        ``after_encode``, not set on ``data`` or the tokenizer here alone."""

    def after_encode(  # noqa: B027 (optional hook: most tasks decide nothing beyond the tensors)
        self, recipe: Recipe, data: PreparedData, tokenizer: PreTrainedTokenizerBase, encoded: EncodedSplits
    ) -> None:
        """Apply what ``encode`` decided beyond the tensors; runs after a fresh or a cached encoding."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        """Batches with dynamic padding (to the longest in the batch, not to max_length)."""

    # ------------------------------------------------------------------ model
    @abstractmethod
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: PreparedData) -> PreTrainedModel:
        """The pretrained body with this task's head."""

    def calibrate(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, data: PreparedData, recipe: Recipe,
                  settings: EvalSettings) -> dict[str, Any]:
        """After training, before the test evaluation: fit what makes the model's scores honest (classification:
        a softmax temperature). ``{"meta": saved with the model, "report": metrics.json's calibration}``."""
        return {}

    def model_meta(self, data: PreparedData) -> dict[str, Any]:
        """What a saved model needs besides its weights to be used again (e.g. its label list)."""
        return {}

    # ------------------------------------------------------------------ metrics
    @abstractmethod
    def compute_metrics(self, data: PreparedData) -> Callable | None:
        """The Trainer's compute_metrics for validation, or None to use the loss only."""

    @abstractmethod
    def baselines(
        self, recipe: Recipe, data: PreparedData, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase,
        max_length: int,
    ) -> dict[str, Any]:
        """What the model could do before tuning, on the test split: ``{name: metrics}``."""

    @abstractmethod
    def evaluate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, meta: dict[str, Any],
        settings: EvalSettings,
    ) -> dict[str, Any]:
        """Metrics of ``model`` on a split: ``{"metrics": {...}, ...extras for metrics.json (e.g. "errors")}``.

        The same code measures the tuned model on the test split and any saved model in ``tailor eval``.
        """

    def load_eval_file(self, path: Any, meta: dict[str, Any], columns: dict[str, str],
                       clean: bool = False) -> tuple[pd.DataFrame, list]:
        """Read a file for ``tailor eval`` (default: a labelled text file validated against the model's labels).

        Texts are normalised as the run's ``data.clean`` normalised its training texts (what the model expects),
        and a row that cannot be scored (no text, no label, a label the model does not know) is a reject; every
        other row is scored, duplicates and short or long texts included. ``clean`` (``tailor eval --clean``)
        also drops what the run's test split lost: near-duplicates and texts outside min_chars / max_chars."""
        from tailorlm.data.clean import saved_cleaning
        from tailorlm.recipe import DataConfig
        from tailorlm.tasks.classification.data import load_labelled_file

        cleaning = saved_cleaning(meta)
        if not clean:
            cleaning = cleaning.model_copy(update={"min_chars": 1, "max_chars": None})
        cfg = DataConfig(train=str(path), labels=meta.get("labels"), clean=cleaning, **columns)
        return load_labelled_file(path, cfg, split="eval", require_label=True, dedupe=clean)

    # ------------------------------------------------------------------ predict
    def predict_proba(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, texts: list[str],
                      max_length: int, batch_size: int) -> np.ndarray:
        """Class probabilities per text, one row per text: only tasks whose spec has ``proba`` give them."""
        raise CapabilityMissing(f"task '{self.name}' gives no class probabilities (its spec lacks 'proba')")

    def predict(self, loaded: LoadedModel, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One prediction per input (inputs already passed through ``normalize_input``), in input order."""
        raise self._cannot_predict()

    def _cannot_predict(self) -> UserError:
        return UserError(f"task '{self.name}' cannot predict yet; use `tailor eval` to score it on a labelled file")

    def input_example(self) -> str:
        """An input as JSON, for error messages that must show the fix."""
        return "{" + ", ".join(f'"{name}": "..."' for name in self.input_fields) + "}"

    def normalize_input(self, item: Any) -> dict[str, Any]:
        """The fields ``predict`` reads, checked: present, not empty, strings (or a string list where allowed).

        A number or boolean is refused, not turned into text (``{"text": 42}`` is a mistake; a CSV cell is always
        text); other keys are dropped.
        Raises :class:`InputProblem` naming the field, so a file row can be reported and a request refused.
        """
        if not self.input_fields:
            raise self._cannot_predict()
        if not isinstance(item, dict):
            kind = "an array" if isinstance(item, list) else type(item).__name__
            raise InputProblem("not_an_object", f"{kind}, not an object like {self.input_example()}")
        out: dict[str, Any] = {}
        for name in self.input_fields:
            keys = [name, *(alias for alias, target in self.input_aliases.items() if target == name)]
            key = next((k for k in keys if _present(item.get(k))), None)
            if key is None:
                shown = " or ".join(f"'{k}'" for k in keys)
                raise InputProblem(f"missing_{name}", f"no {shown} key")
            out[key] = self._field_value(name, key, item[key])
        return out

    def _field_value(self, name: str, key: str, value: Any) -> str | list[str]:
        if isinstance(value, list) and key in self.list_inputs:
            if not all(isinstance(v, str) for v in value):
                raise InputProblem(f"bad_{name}", f"'{key}' must be a list of strings")
            words = [v.strip() for v in value if v.strip()]
            if not words:
                raise InputProblem(f"empty_{name}", f"'{key}' holds no words")
            return words
        if not isinstance(value, str):  # strict: {"text": 42} is a mistake to report, not the text "42"
            kind = {bool: "a boolean", int: "a number", float: "a number"}.get(type(value), type(value).__name__)
            raise InputProblem(f"bad_{name}", f"'{key}' must be a string, not {kind} ({str(value)[:40]}); "
                               f"quote it: \"{key}\": \"...\"")
        if not _visible(value):
            raise InputProblem(f"empty_{name}", f"'{key}' is empty")
        return value


def _present(value: Any) -> bool:
    """None and NaN (a missing cell in Parquet or pandas) mean the key is absent."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _visible(text: str) -> bool:
    """Text that is more than whitespace and invisible characters (what cleaning would reduce to nothing)."""
    from tailorlm.data.clean import clean_text
    from tailorlm.recipe import CleanConfig

    return bool(clean_text(text, CleanConfig()).strip())
