"""What a pretrained encoder could already do for classification, measured on the same test split as the tuned model.

Two baselines answer "was fine-tuning worth it?": zero-shot (nearest label description in the pretrained
sentence-embedding space) and a linear probe (logistic regression on frozen embeddings, the strongest cheap
alternative to fine-tuning). Both use the same metric code as the tuned model. (QA's counterpart, the span probe,
is tasks/qa/span_probe.py.)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV

from tailorlm.evaluate.metrics import classification_metrics, softmax
from tailorlm.evaluate.predictions import per_example_labels
from tailorlm.tasks.classification.probe import ProbeHead
from tailorlm.tasks.common import PROBE_TOLERANCE

# Cosine similarities live in [-1, 1]; a CLIP-like temperature turns them into usable probabilities for ECE.
ZERO_SHOT_SCALE = 20.0


def label_prompt(label: str, descriptions: dict[str, str]) -> str:
    """The text embedded for a label: its description if the recipe gives one, else its name made readable."""
    return descriptions.get(label) or label.replace("_", " ").replace("-", " ")


def zero_shot(
    text_embeddings: np.ndarray, label_embeddings: np.ndarray, y_true: np.ndarray, labels: Sequence[str]
) -> dict:
    """Predict the label whose description embedding is closest (cosine) to the text embedding."""
    similarity = text_embeddings @ label_embeddings.T
    probs = softmax(similarity * ZERO_SHOT_SCALE)
    metrics = classification_metrics(y_true, probs.argmax(axis=1), labels, probs)
    metrics["per_example"] = per_example_labels(probs, list(labels))  # popped into predictions.jsonl
    metrics["method"] = "cosine similarity between pretrained sentence embeddings of the text and of each label"
    return metrics


def linear_probe(
    train_embeddings: np.ndarray,
    train_y: np.ndarray,
    test_embeddings: np.ndarray,
    test_y: np.ndarray,
    labels: Sequence[str],
    seed: int = 42,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Logistic regression on frozen embeddings, its regularisation chosen by 3-fold CV on the training rows.

    With ``validation`` (embeddings, label ids), as ``training.keep_best_of`` asks, the same probe is also scored on
    the validation split (``"validation"``, the score a fine-tune is compared with) and returned as a servable
    ``ProbeHead`` (``"head"``, popped by the baselines stage before metrics.json is written)."""
    min_class = int(np.bincount(train_y, minlength=len(labels))[np.unique(train_y)].min())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if min_class >= 3:
            probe = LogisticRegressionCV(Cs=[0.1, 1.0, 10.0], cv=3, max_iter=2000, tol=PROBE_TOLERANCE,
                                         random_state=seed)
        else:
            probe = LogisticRegression(max_iter=2000, tol=PROBE_TOLERANCE, random_state=seed)
        probe.fit(train_embeddings, train_y)
    probs = _probe_proba(probe, test_embeddings, len(labels))
    metrics = classification_metrics(test_y, probs.argmax(axis=1), labels, probs)
    if validation is not None:
        val_probs = _probe_proba(probe, validation[0], len(labels))
        metrics["validation"] = classification_metrics(validation[1], val_probs.argmax(axis=1), labels, val_probs)
        metrics["head"] = ProbeHead.from_sklearn(probe, len(labels))
    metrics["per_example"] = per_example_labels(probs, list(labels))  # popped into predictions.jsonl
    chosen_c = float(np.atleast_1d(probe.C_)[0]) if hasattr(probe, "C_") else probe.C
    metrics["method"] = (
        f"logistic regression (C={chosen_c:g}) on frozen mean-pooled pretrained embeddings of "
        f"{len(train_y)} training rows"
    )
    return metrics


def _probe_proba(probe: LogisticRegression, embeddings: np.ndarray, n_labels: int) -> np.ndarray:
    probs = np.zeros((len(embeddings), n_labels), dtype=np.float64)
    probs[:, probe.classes_] = probe.predict_proba(embeddings)
    return probs
