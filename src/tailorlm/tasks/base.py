"""The Task object: everything that differs between kinds of data, so the trainer never switches on a name.

A task says how to read and validate its data, how to tokenize it, which model class and collator to use, which
metrics to compute, what baseline to measure before tuning, and how to evaluate and predict after. The pipeline
(``tailorlm.run``), the trainer and ``tailor eval`` call these methods; adding a task is one new module plus an
entry in ``tailorlm.tasks.TASKS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe

TokenCounter = Callable[[list[str]], list[int]]


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

    name: str
    #: peft's TaskType for LoRA (e.g. "SEQ_CLS"), so the task head stays trainable
    peft_task_type: str
    #: the transformers Auto class that reloads a saved model of this task
    auto_model_class: Any
    #: the model used when the recipe names none (a shipped alias, so it works offline)
    default_model: str = "minilm"
    #: the validation metric that picks the best checkpoint unless the recipe says otherwise
    default_metric: str = "loss"
    #: whether a larger value of ``default_metric`` is better
    greater_is_better: bool = False

    # ------------------------------------------------------------------ data
    @abstractmethod
    def prepare_data(self, recipe: Recipe, count_tokens: TokenCounter | None) -> Any:
        """Load, clean, validate and split the recipe's data (a ``PreparedData``-like object with ``train``,
        ``validation``, ``test`` frames, ``rejects`` and ``report``); rejected rows carry their reason."""

    @abstractmethod
    def encode(self, recipe: Recipe, data: Any, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        """Tokenize train and validation for the Trainer.

        Its result may be cached (``data/token_cache.py``) and reused by a later run, so anything else it decides
        (a decoder's target length, QA's stride) must go in ``EncodedSplits.stats`` and be applied in
        ``after_encode``, not set on ``data`` or the tokenizer here alone."""

    def after_encode(  # noqa: B027 (optional hook: most tasks decide nothing beyond the tensors)
        self, recipe: Recipe, data: Any, tokenizer: PreTrainedTokenizerBase, encoded: EncodedSplits
    ) -> None:
        """Apply what ``encode`` decided beyond the tensors; runs after a fresh or a cached encoding."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        """Batches with dynamic padding (to the longest in the batch, not to max_length)."""

    # ------------------------------------------------------------------ model
    @abstractmethod
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: Any) -> PreTrainedModel:
        """The pretrained body with this task's head."""

    def model_meta(self, data: Any) -> dict[str, Any]:
        """What a saved model needs besides its weights to be used again (e.g. its label list)."""
        return {}

    # ------------------------------------------------------------------ metrics
    @abstractmethod
    def compute_metrics(self, data: Any) -> Callable | None:
        """The Trainer's compute_metrics for validation, or None to use the loss only."""

    @abstractmethod
    def baselines(
        self, recipe: Recipe, data: Any, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase, max_length: int
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

    def load_eval_file(self, path: Any, meta: dict[str, Any], columns: dict[str, str]) -> tuple[pd.DataFrame, list]:
        """Read a file for ``tailor eval`` (default: a labelled text file validated against the model's labels)."""
        from tailorlm.data import load_labelled_file
        from tailorlm.recipe import DataConfig

        cfg = DataConfig(train=str(path), labels=meta.get("labels"), **columns)
        return load_labelled_file(path, cfg, split="eval", require_label=True)
