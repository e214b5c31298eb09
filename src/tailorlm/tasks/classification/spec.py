"""The facts about text classification that the rest of tailorlm asks (see tasks/spec.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tailorlm.tasks.spec import CardText, Demo, Metric, TaskSpec


def describe(meta: Mapping[str, Any], labels: Sequence[str], code: Callable[[Any], str]) -> str:
    """The model card's "What it does"."""
    return f"Labels a text with one of {len(labels)} classes: {', '.join(code(label) for label in labels)}."


SPEC = TaskSpec(
    name="classification",
    task_class="tailorlm.tasks.classification.task:ClassificationTask",
    default_model="minilm",
    main_metric=Metric("f1_macro", greater_is_better=True),
    select_metric=Metric("f1_macro", greater_is_better=True),
    pipeline_tag="text-classification",
    peft_task_type="SEQ_CLS",
    auto_model_class="AutoModelForSequenceClassification",
    demo=Demo("tailorlm.demos.classification:generate_demo_dataset", "examples/data/utility"),
    card=CardText(describe, pipeline_call='"your text here"'),
    file_columns=("data.text_column", "data.label_column"),
    capabilities=frozenset({"multi_task", "proba", "calibration", "kfold", "stratify", "self_train",
                            "per_example_loss", "fairness", "labels", "keep_probe"}),
)
