"""One answer to "is a larger value better?" for every metric, shared by the report, the verdict, tune and the
Trainer's checkpoint selection (tailorlm/metric_names.py)."""

from __future__ import annotations

import pytest

from tailorlm.metric_names import TASK_MAIN_METRIC, greater_is_better, metric_name, prose_name
from tailorlm.tasks import get_task


@pytest.mark.parametrize("metric", ["loss", "eval_loss", "perplexity", "ece", "ter", "wer", "cer"])
def test_losses_and_error_rates_are_lower_is_better(metric: str) -> None:
    assert greater_is_better(metric) is False


@pytest.mark.parametrize("metric", ["f1_macro", "eval_f1_macro", "accuracy", "f1", "exact_match", "bleu", "chrf"])
def test_scores_are_greater_is_better(metric: str) -> None:
    assert greater_is_better(metric) is True


@pytest.mark.parametrize("task", sorted(TASK_MAIN_METRIC))
def test_each_task_selection_metric_agrees_with_the_task(task: str) -> None:
    spec = get_task(task)
    assert greater_is_better(spec.default_metric) is spec.greater_is_better


def test_names_as_headings_and_in_prose() -> None:
    assert metric_name("bleu") == "BLEU" and metric_name("f1_macro") == "Macro F1"
    assert metric_name("has_ans_f1") == "has ans f1"
    assert prose_name("f1_macro") == "macro-F1" and prose_name("perplexity") == "Perplexity"
