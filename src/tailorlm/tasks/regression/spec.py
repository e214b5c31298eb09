"""The facts about regression (a float target per text or text pair) that the rest of tailorlm asks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tailorlm.tasks.spec import CardText, Demo, Metric, TaskSpec


def describe(meta: Mapping[str, Any], labels: Sequence[str], code: Callable[[Any], str]) -> str:
    """The model card's "What it does"."""
    what = "a pair of texts" if meta.get("pair") else "a text"
    return f"Scores {what} with a number (trained on {code(meta.get('target', 'target'))})."


SPEC = TaskSpec(
    name="regression",
    task_class="tailorlm.tasks.regression.task:RegressionTask",
    default_model="minilm",
    main_metric=Metric("rmse", greater_is_better=False),
    select_metric=Metric("rmse", greater_is_better=False),
    pipeline_tag="text-classification",  # the Hub files single-output regression heads under it
    peft_task_type="SEQ_CLS",
    auto_model_class="AutoModelForSequenceClassification",
    demo=Demo("tailorlm.demos.regression:generate_regression_dataset", "examples/data/utility-urgency"),
    card=CardText(describe, pipeline_call=None),
    file_columns=("data.text_column", "data.label_column"),  # a pair's second column is checked by its reader
    capabilities=frozenset({"multi_task", "per_example_loss"}),
    floor_baselines=frozenset({"mean"}),
)
