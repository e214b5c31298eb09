"""The facts about extractive question answering that the rest of tailorlm asks (see tasks/spec.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tailorlm.tasks.spec import CardText, Demo, Metric, TaskSpec


def describe(meta: Mapping[str, Any], labels: Sequence[str], code: Callable[[Any], str]) -> str:
    """The model card's "What it does": SQuAD v2 data teaches the model to say there is no answer."""
    return "Answers a question with a span copied from the context it is given" + (
        ", or says there is no answer (trained with unanswerable questions)." if meta.get("version_2") else ".")


SPEC = TaskSpec(
    name="qa",
    task_class="tailorlm.tasks.qa.task:QATask",
    default_model="minilm",
    main_metric=Metric("f1", greater_is_better=True),  # SQuAD F1 over normalised answers
    select_metric=Metric("f1", greater_is_better=True),
    pipeline_tag="question-answering",
    peft_task_type="QUESTION_ANS",
    auto_model_class="AutoModelForQuestionAnswering",
    demo=Demo("tailorlm.demos.qa:generate_qa_dataset", "examples/data/utility-qa"),
    card=CardText(describe, pipeline_call='question="...", context="..."',
                  length_note="Contexts longer than {n} tokens are read in overlapping windows; the best span of "
                              "all wins."),
    capabilities=frozenset({"multi_task"}),
    auto_lr_factor=2.0,  # span head from nothing
)
