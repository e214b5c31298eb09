"""The facts about token classification (BIO tags) that the rest of tailorlm asks (see tasks/spec.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tailorlm.tasks.spec import CardText, Demo, Metric, TaskSpec


def describe(meta: Mapping[str, Any], labels: Sequence[str], code: Callable[[Any], str]) -> str:
    """The model card's "What it does"."""
    shown = ", ".join(code(label) for label in labels)
    return f"Tags each word of a sentence (BIO tags) to find entities of the types {shown}."


SPEC = TaskSpec(
    name="token-classification",
    task_class="tailorlm.tasks.token_classification.task:TokenClassificationTask",
    default_model="minilm",
    main_metric=Metric("f1", greater_is_better=True),  # seqeval's entity-level micro F1
    select_metric=Metric("f1", greater_is_better=True),
    pipeline_tag="token-classification",
    peft_task_type="TOKEN_CLS",
    auto_model_class="AutoModelForTokenClassification",
    demo=Demo("tailorlm.demos.token_classification:generate_ner_dataset", "examples/data/utility-ner"),
    card=CardText(describe, pipeline_call='"your text here"'),
    capabilities=frozenset({"multi_task", "labels"}),
    auto_lr_factor=3.0,  # tag head from nothing
)
