"""The Task object: everything that differs between kinds of data, so the trainer never switches on a name.

A task says how to read and validate its data, how to tokenize it, which model class and collator to use, which
metrics to compute, what baseline to measure before tuning, and how to evaluate and predict after. The pipeline
(``tailorlm.run``) and the trainer call these methods; adding a task is one new module plus an entry in
``tailorlm.tasks.TASKS``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tailorlm.models.registry import ResolvedModel
from tailorlm.recipe import Recipe


@dataclass
class EncodedSplits:
    """Tokenized splits ready for the Trainer (``length`` column for length-grouped batching)."""

    train: Dataset
    validation: Dataset | None
    max_length: int
    stats: dict[str, Any] = field(default_factory=dict)


class Task(ABC):
    """One kind of learning problem (classification, QA, generation, ...)."""

    name: str
    #: peft's TaskType for LoRA (e.g. "SEQ_CLS"), so the task head stays trainable
    peft_task_type: str
    #: the validation metric that picks the best checkpoint unless the recipe says otherwise
    default_metric: str = "loss"

    @abstractmethod
    def prepare_data(self, recipe: Recipe, count_tokens: Callable[[list[str]], list[int]] | None) -> Any:
        """Load, clean, validate and split the recipe's data; rejected rows carry their reason."""

    @abstractmethod
    def build_model(self, resolved: ResolvedModel, recipe: Recipe, data: Any) -> PreTrainedModel:
        """The pretrained body with this task's head."""

    @abstractmethod
    def encode(self, recipe: Recipe, data: Any, tokenizer: PreTrainedTokenizerBase) -> EncodedSplits:
        """Tokenize train and validation for the Trainer."""

    @abstractmethod
    def collator(self, tokenizer: PreTrainedTokenizerBase) -> Callable:
        """Batches with dynamic padding (to the longest in the batch, not to max_length)."""

    @abstractmethod
    def compute_metrics(self, data: Any) -> Callable | None:
        """The Trainer's compute_metrics for validation, or None to use the loss only."""

    @abstractmethod
    def baselines(
        self, recipe: Recipe, data: Any, resolved: ResolvedModel, tokenizer: PreTrainedTokenizerBase, max_length: int
    ) -> dict[str, Any]:
        """What the model could do before tuning, on the test split."""

    @abstractmethod
    def evaluate(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, frame: pd.DataFrame, labels: list[str],
        max_length: int, batch_size: int,
    ) -> dict[str, Any]:
        """Metrics of ``model`` on a split (same code for every model measured)."""

    def report_extras(self, run_dir: Path, metrics: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Extra files for the report (default: none)."""
