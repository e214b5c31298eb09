"""Shared fixtures: a tiny random encoder (fast) saved like a real model, and small labelled files."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on CI's two cores: one torch thread each, no oversubscription.
    # Subprocesses the tests start (the real CLI, the DDP pair) inherit the setting.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)

@pytest.fixture(autouse=True, scope="session")
def _fresh_tokenized_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tokenised splits cached by an earlier test session must never stand in for today's encode code."""
    os.environ["TAILORLM_TOKENIZED_CACHE"] = str(tmp_path_factory.mktemp("tokenized-cache"))


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny matrices on a shared machine: one intra-op thread is faster than two (modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


POSITIVE = ["great", "lovely", "quick", "helpful", "friendly", "excellent", "smooth", "clear"]
NEGATIVE = ["awful", "slow", "rude", "broken", "late", "confusing", "noisy", "expensive"]
NOUNS = ["service", "engineer", "bill", "app", "meter", "call", "refund", "website"]


def sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Short, distinct review-like texts whose label follows their adjectives: learnable in a few steps."""
    rng = random.Random(seed)
    combos = {
        label: [(noun, a, b) for noun in NOUNS for a in words for b in words if a != b]
        for label, words in (("positive", POSITIVE), ("negative", NEGATIVE))
    }
    for pool in combos.values():
        rng.shuffle(pool)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        noun, a, b = combos[label][i // 2 % len(combos[label])]
        rows.append({"text": f"the {noun} was {a} and {b}", "label": label})
    return rows


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and the shipped MiniLM tokenizer, saved as safetensors."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tailorlm.models.registry import resolve_model

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm").source)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=128,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.model_max_length = 128
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def sentiment_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    pd.DataFrame(sentiment_rows(160)).to_csv(path, index=False)
    return path


def write_recipe(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture()
def tiny_recipe(tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path) -> Path:
    return write_recipe(
        tmp_path / "recipe.yaml",
        f"""
task: classification
output_dir: {tmp_path / "run"}
model:
  name: {tiny_model_dir}
data:
  train: {sentiment_csv}
  split: {{validation: 0.2, test: 0.25}}
training:
  epochs: 2
  batch_size: 16
  learning_rate: 1.0e-3
  early_stopping_patience: null
baseline:
  linear_probe: true
""",
    )
