"""Helpers several tasks share when they build a model: the recipe's dropout on a model config, and how many tokens
a tokenizer's model reads. They live here, not in one task's package, so no task imports another."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: lbfgs stopping tolerance for the logistic-regression probes. sklearn's default (1e-4) stops short of the optimum
#: (114 of 213 iterations on the token-classification parity case), where a 1e-6 change in the frozen features (another
#: CPU's float rounding) moved 5 of 1,313 test predictions; at 1e-6 the strictly convex problem is solved, so a probe
#: scores the same on every machine.
PROBE_TOLERANCE = 1e-6

# Config attributes that hold dropout probabilities, across encoder families.
_DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "dropout",
    "attention_dropout",
    "classifier_dropout",
    "seq_classif_dropout",
)


def set_dropout(config: Any, dropout: float | None, attention_dropout: float | None = None) -> None:
    """Apply the recipe's dropout to every dropout attribute this config has (hidden and attention), then
    ``training.attention_dropout`` to the attention-probability ones alone."""
    if dropout is not None:
        for key in _DROPOUT_KEYS:
            if hasattr(config, key):
                setattr(config, key, dropout)
    set_attention_dropout(config, attention_dropout)


# Config attributes of dropout on attention probabilities: BERT family, DistilBERT/BART/Llama, GPT-2.
_ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop", "attn_dropout")


def set_attention_dropout(config: Any, dropout: float | None) -> None:
    """Attention dropout regularises which tokens a head may rely on, separately from hidden dropout."""
    if dropout is None:
        return
    for key in _ATTENTION_DROPOUT_KEYS:
        if hasattr(config, key):
            setattr(config, key, dropout)


def model_token_limit(tokenizer: PreTrainedTokenizerBase) -> int:
    """The tokenizer's ``model_max_length``, capped at 8192: some tokenizers report a huge sentinel instead."""
    limit = getattr(tokenizer, "model_max_length", 512) or 512
    return int(min(limit, 8192))
