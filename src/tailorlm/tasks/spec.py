"""TaskSpec: what the rest of tailorlm needs to know about a task, stated once per task in ``tasks/<name>/spec.py``.

The recipe's validators, the model card, ``tailor demo-data``, the server and k-fold ask a task's spec instead of
testing its name, so adding a task touches its own package and one line of the registry (``tasks/__init__.py``).
A spec is plain data that imports nothing heavy: it names what to import (``"module:attribute"`` strings, the
transformers Auto class by name), so reading it never loads transformers, sacrebleu or seqeval.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tailorlm.errors import RecipeError

#: What a task can do beyond the common Task methods, each from what the code does today.
CAPABILITIES: dict[str, str] = {
    "proba": "Task.predict_proba gives class probabilities per text (self-training, the counterfactual audit)",
    "calibration": "Task.calibrate fits a softmax temperature on the validation split (training.calibrate)",
    "kfold": "the prepared data is one labelled row per text, which (Stratified)KFold splits (validation.kfold)",
    "stratify": "a row has one label that a subset of the training rows can be stratified on (the data curve)",
    "self_train": "unlabelled texts can be pseudo-labelled with confident predictions (adapt.self_train)",
    "per_example_loss": "a per-row weight column scales each example's loss (fairness.mitigation: reweight)",
    "fairness": "the bias audit and reweighing by group (fairness/, tailor audit)",
    "labels": "the model answers from a closed label set, saved with it (tailor serve's /info, the model card)",
    "keep_probe": "the linear probe baseline can be saved as the run's model (training.keep_best_of)",
    "multi_task": "an encoder with a head on it: several such tasks can share one encoder (tasks:, multitask/)",
    "generates": "the model writes free text, fluent but possibly wrong (the model card's limitations)",
}


@dataclass(frozen=True)
class Metric:
    """A metric name and the direction it improves in."""

    name: str
    greater_is_better: bool


@dataclass(frozen=True)
class Demo:
    """The task's generated demo dataset: ``generator`` is ``"module:function"`` taking ``(out_dir, seed=...)`` and
    returning ``{name: path}``; ``default_out`` is the folder ``tailor demo-data`` writes to."""

    generator: str
    default_out: str

    def load(self) -> Callable[..., dict[str, Any]]:
        """The generator function, imported on first use."""
        return _import(self.generator)


#: what the model card says of an input longer than ``max_length`` (``{n}``), unless the task says otherwise
CUT_NOTE = "Inputs longer than {n} tokens are cut: the rest is not read."
#: "What it does" of the model card: (tailor_model.json meta, the labels, a Markdown inline-code formatter) -> text
Describe = Callable[[Mapping[str, Any], Sequence[str], Callable[[Any], str]], str]


@dataclass(frozen=True)
class CardText:
    """What the model card (serve/card.py) says that differs by task."""

    describe: Describe
    #: the value the card's ``tailor predict --text`` example shows, and a comment after that command
    example: str = "your text here"
    example_note: str = ""
    #: what happens to an input longer than the model's ``max_length`` (``{n}``: that length)
    length_note: str = CUT_NOTE
    #: the arguments of a transformers ``pipeline(<pipeline_tag>)`` call, or None when the task has no pipeline
    pipeline_call: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """One task's facts. ``main_metric`` and ``select_metric`` are two facts on purpose: the first is what the
    report, the verdict and the comparisons judge a tuned model on (its test split); the second picks the best
    checkpoint on the validation split unless ``training.metric`` says otherwise. They differ where the main metric
    is too costly to compute at every evaluation (translation: BLEU needs generation, so checkpoints are chosen by
    the validation loss) or is not what the Trainer logs (generation: perplexity is exp of the loss)."""

    name: str
    #: the Task class, ``"module:Class"``, imported only when a run needs it (``tasks.get_task``)
    task_class: str
    #: the model used when the recipe names none (a shipped alias, so it works offline); None: the recipe must
    default_model: str | None
    main_metric: Metric
    select_metric: Metric
    #: the Hugging Face Hub's pipeline tag (the model card's front matter)
    pipeline_tag: str
    #: peft's TaskType for LoRA (e.g. "SEQ_CLS"), so the task head stays trainable
    peft_task_type: str
    #: the name of the transformers Auto class that loads a model of this task (``transformers.<name>``)
    auto_model_class: str
    demo: Demo
    card: CardText
    capabilities: frozenset[str] = frozenset()
    #: what to tell a user whose recipe names no model when ``default_model`` is None or unsuitable
    model_hint: str | None = None
    #: ``training.epochs: auto`` never picks more on a small set (train/auto.py): a causal LM adapting its style to
    #: a domain's text overfits within a few passes; None: the general policy alone
    auto_epoch_cap: int | None = None
    #: ``learning_rate: auto`` times this: new parts that start from nothing (span and tag heads, a warm-started
    #: seq2seq model's cross-attention) learn slowly at an encoder's usual rate
    auto_lr_factor: float = 1.0
    #: baselines of this task that are floors (lower bounds, never the bar: evaluate/floors.py), beyond the
    #: task-independent ones (a random head)
    floor_baselines: frozenset[str] = frozenset()
    #: the recipe keys naming the text and label columns that every csv/tsv data file of the task must have, so
    #: that a wrong column fails from the header before torch loads (precheck.py); None: the task's reader alone
    #: knows (alternative layouts: chat or prompt/response, SQuAD or flat, CoNLL or JSONL)
    file_columns: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(self.capabilities - CAPABILITIES.keys())
        if unknown:
            raise ValueError(f"task '{self.name}': unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")

    def has(self, capability: str) -> bool:
        """Whether the task can do ``capability`` (one of :data:`CAPABILITIES`)."""
        if capability not in CAPABILITIES:
            raise KeyError(f"unknown capability '{capability}'; known: {', '.join(CAPABILITIES)}")
        return capability in self.capabilities

    def model_name(self, named: str | None) -> str:
        """``model.name`` as the recipe gives it, else this task's default; one line when the task has none."""
        if named is not None:
            return named
        if self.default_model is None:
            raise RecipeError(self.model_hint or f"task '{self.name}' has no default model; set model.name")
        return self.default_model

    def auto_class(self) -> Any:
        """The transformers Auto class (imports transformers)."""
        import transformers

        return getattr(transformers, self.auto_model_class)

    def load_task_class(self) -> type:
        """The Task class (imports the task's module and its dependencies)."""
        return _import(self.task_class)


def _import(target: str) -> Any:
    """``"module:attribute"`` -> the attribute, importing the module."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
