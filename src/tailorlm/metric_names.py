"""Metric names, titles and directions: one place for what every metric key means to a reader and to a search.

The report, the terminal tables, the verdict, the significance tests, the data curve, ``tailor tune`` and the
Trainer's checkpoint selection all need to know which metric is a task's headline, how to spell it, and whether
a smaller value is the better one. Each used to keep its own copy (and the copies disagreed: the Trainer thought
a lower TER was worse); they now all ask this module, which imports nothing else from tailorlm so that any
package can use it without an import cycle.
"""

from __future__ import annotations

import math
from typing import Any

from tailorlm.tasks import TASK_SPECS

#: (metrics key, column heading) of classification's comparison table, in display order.
METRIC_COLUMNS: list[tuple[str, str]] = [
    ("accuracy", "Accuracy"),
    ("precision_macro", "Macro precision"),
    ("recall_macro", "Macro recall"),
    ("f1_macro", "Macro F1"),
    ("f1_weighted", "Weighted F1"),
    ("ece", "Calibration error (ECE)"),
]
#: Metrics where a smaller number is the better one (ask ``greater_is_better`` rather than this set).
LOWER_IS_BETTER = frozenset({"ece", "loss", "perplexity", "ter", "wer", "cer", "rmse", "mae", "mse",
                             "squared_error", "absolute_error"})
#: The number a task's headline is about; any other task uses its first flat metric.
TASK_MAIN_METRIC: dict[str, str] = {name: spec.main_metric.name for name, spec in TASK_SPECS.items()}
#: Display names of metrics other tasks report; unknown keys are shown as written, underscores as spaces.
METRIC_TITLES: dict[str, str] = {
    "perplexity": "Perplexity",
    "loss": "Loss",
    "exact_match": "Exact match",
    "f1": "F1",
    "precision": "Precision",
    "recall": "Recall",
    "accuracy": "Accuracy",
    "bleu": "BLEU",
    "chrf": "chrF",
    "ter": "TER",
    "ece": "Calibration error (ECE)",
    "rmse": "RMSE",
    "mae": "MAE",
    "pearson": "Pearson r",
    "spearman": "Spearman ρ",
    "squared_error": "Squared error",
}
#: Numeric keys of a metrics dict that are counts or bookkeeping, not scores to compare.
NOT_METRICS = frozenset({"n", "support", "rejected", "step", "epoch", "tokens", "n_tokens", "rows", "runtime_s"})
#: The metric the headline and per-class comparison of a classification run are about.
HEADLINE_METRIC = "f1_macro"

#: Plain-language meaning of each metric, for readers who are domain experts rather than ML engineers.
METRIC_HELP: dict[str, str] = {
    "accuracy": "share of test texts given the right label",
    "precision_macro": "when the model says a label, how often it is right (averaged over labels)",
    "recall_macro": "of the texts that carry a label, how many the model finds (averaged over labels)",
    "f1_macro": "balance of precision and recall, averaged so that every label counts equally",
    "f1_weighted": "F1 averaged with each label weighted by how many test texts carry it",
    "ece": "how far the model's stated confidence is from how often it is right (lower is better)",
    "perplexity": "how surprised the model is by the reference text; lower means it predicts it better",
    "loss": "average cross-entropy per token of the reference text (lower is better)",
    "exact_match": "share of answers that match a reference exactly (after normalising case and punctuation)",
    "f1": "overlap between the predicted and the reference answers or entities (higher is better)",
    "precision": "of what the model predicted, the share that is right",
    "recall": "of what it should have found, the share the model found",
    "bleu": "n-gram overlap between the model's output and the reference, 0-100 (sacrebleu, corpus level)",
    "chrf": "character n-gram F-score against the reference, 0-100; kinder than BLEU to word-form changes",
    "rmse": "root mean squared error between the predicted and the true number (lower is better)",
    "mae": "mean absolute error between the predicted and the true number (lower is better)",
    "pearson": "linear correlation between predicted and true numbers, -1 to 1 (higher is better)",
    "spearman": "rank correlation: whether higher true numbers get higher predictions, -1 to 1 (higher is better)",
    "squared_error": "mean squared error per example (lower is better)",
    "ter": "edits needed to turn the output into the reference, per reference word (lower is better)",
}


def greater_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` is the better one; Trainer log keys (``eval_loss``) count as their
    metric. The one answer the report's highlight, the verdict, the tests, the data curve, ``tailor tune`` and
    checkpoint selection share."""
    return metric.removeprefix("eval_") not in LOWER_IS_BETTER


#: Metrics whose better value does not make a better system, so no table marks a "best" one: a model that always
#: predicts the class shares has a near-perfect calibration error (ECE) and is useless.
NOT_RANKED = frozenset({"ece", "ece_uncalibrated"})


def ranks_systems(metric: str) -> bool:
    """Whether the best value of ``metric`` picks out the best system (report and card highlighting)."""
    return metric.removeprefix("eval_") not in NOT_RANKED and not is_count(metric)


def metric_name(key: str) -> str:
    """A metric key as a column heading: known names spelled properly, others with spaces."""
    return METRIC_TITLES.get(key) or dict(METRIC_COLUMNS).get(key) or key.replace("_", " ")


def prose_name(key: str) -> str:
    """A metric as a sentence names it: "macro-F1" for the classification headline, else its heading."""
    return "macro-F1" if key == HEADLINE_METRIC else metric_name(key)


def metric_title(log_key: str) -> str:
    """``eval_f1_macro`` -> ``f1 macro``: Trainer log keys as readers see them."""
    return log_key.removeprefix("eval_").replace("_", " ")


def is_count(key: str) -> bool:
    """Row counts and bookkeeping (``n``, ``has_ans_n``, ``step``) are not scores to compare."""
    return key in NOT_METRICS or key.endswith("_n")


def flat_metric_keys(systems: list[Any]) -> list[str]:
    """Keys holding a finite number in any of the metric dicts, in first-seen order, counts left out."""
    keys: list[str] = []
    for raw in systems:
        if isinstance(raw, dict) and "skipped" not in raw:
            keys += [k for k, v in raw.items() if _score(v) and not is_count(k) and k not in keys]
    return keys


def headline_keys(keys: list[str]) -> list[str]:
    """Keys that are not a breakdown of another key (``has_ans_f1`` breaks down ``f1``): what fits a terminal."""
    return [k for k in keys if not any(k != other and k.endswith("_" + other) for other in keys)]


def _score(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
