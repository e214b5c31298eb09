"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

A fine-tuned classifier's softmax is often far from its accuracy: a few epochs on a small set leave it
under-confident (probabilities spread thin although the argmax is right), longer training over-confident. A team
reading "confidence 0.42" on a prediction that is right 9 times in 10 is misled either way. One scalar T, fitted on
the validation split by minimising the negative log-likelihood of softmax(logits / T), fixes most of it without
changing a single predicted label (dividing by T > 0 keeps the argmax). The test split, untouched by the fit,
then shows the expected calibration error before and after.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: fewer validation rows than this: a temperature fitted on them would be noise, so none is fitted
MIN_ROWS = 20
#: T is searched on a log scale within [1/50, 50]
_LOG_BOUND = float(np.log(50.0))
#: where a model carries its fitted temperature at run time (and in config.json for a fully fine-tuned model)
CONFIG_ATTRIBUTE = "tailorlm_temperature"


def _log_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    """log softmax(logits / temperature), computed stably in float64."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    return scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))


def negative_log_likelihood(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log p(true label) under softmax(logits / temperature)."""
    log_probs = _log_softmax(logits, temperature)
    return float(-log_probs[np.arange(len(y_true)), np.asarray(y_true, dtype=int)].mean())


def smoothed_cross_entropy(logits: np.ndarray, y_true: np.ndarray, temperature: float, epsilon: float) -> float:
    """Cross-entropy of softmax(logits / T) against targets that keep ``epsilon`` for the other labels."""
    log_probs = _log_softmax(logits, temperature)
    true = log_probs[np.arange(len(y_true)), np.asarray(y_true, dtype=int)]
    others = (log_probs.sum(axis=1) - true) / max(1, log_probs.shape[1] - 1)
    return float(-((1.0 - epsilon) * true + epsilon * others).mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> dict[str, Any]:
    """The temperature that minimises validation NLL, with the NLL before (T = 1) and after.

    The fit's targets keep ``1 / (n + 2)`` for the other labels (Laplace's rule of succession): a validation split
    the model gets entirely right would otherwise pull T to zero, i.e. certainty on every future text, which
    n correct answers do not justify. With errors in the split this barely moves T.
    """
    from scipy.optimize import minimize_scalar

    epsilon = 1.0 / (len(y_true) + 2)
    result = minimize_scalar(
        lambda log_t: smoothed_cross_entropy(logits, y_true, float(np.exp(log_t)), epsilon),
        bounds=(-_LOG_BOUND, _LOG_BOUND), method="bounded", options={"xatol": 1e-4})
    temperature = float(np.exp(result.x))
    before = negative_log_likelihood(logits, y_true)
    if smoothed_cross_entropy(logits, y_true, temperature, epsilon) > smoothed_cross_entropy(logits, y_true, 1.0,
                                                                                              epsilon):
        temperature = 1.0  # the bounded search missed the basin: T = 1 is inside the bounds and no worse
    after = negative_log_likelihood(logits, y_true, temperature)
    return {"temperature": round(temperature, 6), "validation_nll_before": round(before, 6),
            "validation_nll_after": round(after, 6)}


def temperature_of(model: Any) -> float:
    """The fitted temperature a model carries, 1.0 when none was fitted."""
    value = getattr(getattr(model, "config", None), CONFIG_ATTRIBUTE, None)
    return float(value) if value else 1.0


def set_temperature(model: Any, temperature: float) -> None:
    setattr(model.config, CONFIG_ATTRIBUTE, float(temperature))
