"""Loading weights, configs and tokenizers safely, with one-line errors instead of library tracebacks."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from tailorlm.errors import ModelError
from tailorlm.models.registry import ResolvedModel, hub_load_error
from tailorlm.recipe import ModelConfig
from tailorlm.safety import check_remote_code

log = logging.getLogger(__name__)


def _common_kwargs(resolved: ResolvedModel, cfg: ModelConfig) -> dict[str, Any]:
    if resolved.is_local:  # a folder shipping its own classes is refused before transformers imports them
        check_remote_code(resolved.path, resolved.name, cfg.trust_remote_code)
    if cfg.trust_remote_code:
        warnings.warn(
            f"model.trust_remote_code is true: code shipped with '{resolved.name}' will run on this machine",
            stacklevel=3,
        )
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code}
    if cfg.revision and not resolved.is_local:
        kwargs["revision"] = cfg.revision
    return kwargs


def load_pretrained(factory: Any, resolved: ResolvedModel, cfg: ModelConfig, *, what: str = "model.name",
                    **kwargs: Any) -> Any:
    """``factory.from_pretrained`` with safe defaults: safetensors unless pickle is allowed, no remote code.

    ``what`` names the setting the model came from in the error (``model.name``, or MODEL_DIR of a saved model).
    """
    options = _common_kwargs(resolved, cfg) | kwargs
    is_config = factory.__name__.endswith("Config")
    if not is_config and not cfg.allow_pickle:
        options.setdefault("use_safetensors", True)
    try:
        return factory.from_pretrained(resolved.source, **options)
    except (OSError, ValueError) as exc:
        if not resolved.is_local:
            raise hub_load_error(resolved.name, exc) from None
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{resolved.source}: cannot load the model ({message[:200]}); check {what}") from None


def load_tokenizer(resolved: ResolvedModel, cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The model's tokenizer; models without a pad token (decoders) get their EOS token as padding."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolved.source, **_common_kwargs(resolved, cfg))
    except (OSError, ValueError) as exc:
        if not resolved.is_local:
            raise hub_load_error(resolved.name, exc) from None
        raise ModelError(
            f"{resolved.source}: no usable tokenizer in the model folder ({type(exc).__name__}); save the "
            "tokenizer next to the weights (tokenizer.save_pretrained)"
        ) from None
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
