"""Text-pair regression as a bi-encoder: each text embedded alone, the score a line of their cosine similarity.

A sentence-embedding model (sentence-transformers: all-MiniLM-L6-v2 is one) was trained so that the cosine of two
mean-pooled embeddings measures how alike the texts are. Fine-tuning it as a *cross-encoder* (both texts in one
input, a new linear head) throws that away: on 500 STS-B pairs the cross-encoder ends at RMSE 0.97, worse than the
frozen embeddings' cosine fitted by a line (0.83) and a ridge probe on them (0.88). The bi-encoder keeps what the
model knows: its untrained state *is* the fitted cosine (``scale * cos(u, v) + shift``, the line fitted on the
training pairs by least squares), and fine-tuning moves the encoder so that cosine tracks the team's scores,
sentence-transformers' ``CosineSimilarityLoss`` recipe with the line learnt instead of fixed to 0-1.

Saved as the encoder (transformers' own folder) plus ``cosine_head.safetensors`` (the line's two numbers, no
pickle); models/saved.py loads such a folder through :func:`load_cosine_model`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase
from transformers.modeling_outputs import SequenceClassifierOutput

from tailorlm.evaluate.inference import forward_sorted, mean_pooled
from tailorlm.models.registry import ResolvedModel

#: tailor_model.json's ``head`` for a bi-encoder; models/saved.py loads such a folder with load_cosine_model
COSINE_HEAD = "cosine_similarity"
COSINE_FILE = "cosine_head.safetensors"
#: the encoded columns of the second text of each pair
PAIR_IDS, PAIR_MASK = "pair_input_ids", "pair_attention_mask"
#: training pairs embedded to fit the starting line (two numbers: a thousand pairs pin them down)
LINE_FIT_ROWS = 1000


def is_sentence_embedding_model(resolved: ResolvedModel) -> bool:
    """Whether the model was trained for cosine similarity (a sentence-transformers folder or Hub repository)."""
    markers = ("modules.json", "config_sentence_transformers.json")
    if resolved.is_local:
        return any((resolved.path / name).exists() for name in markers)
    try:
        from huggingface_hub import file_exists

        return any(file_exists(resolved.source, name) for name in markers)
    except Exception:  # offline or unknown: the cross-encoder, as before
        return False


def fit_line(cosines: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
    """(scale, shift) of the least-squares line from cosine to target; a flat line when the cosines do not vary."""
    if len(cosines) < 2 or float(np.std(cosines)) < 1e-9:
        return 0.0, float(np.mean(targets)) if len(targets) else 0.0
    scale, shift = np.polyfit(cosines.astype(np.float64), targets.astype(np.float64), 1)
    return float(scale), float(shift)


def embed(encoder: Any, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int,
          batch_size: int) -> np.ndarray:
    """Mean-pooled, L2-normalised embeddings (the sentence-transformers embedding), in the order of ``texts``."""
    return forward_sorted(encoder, tokenizer, list(texts), max_length, batch_size, mean_pooled)


def cosines(encoder: Any, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], pairs: Sequence[str],
            max_length: int, batch_size: int) -> np.ndarray:
    u = embed(encoder, tokenizer, texts, max_length, batch_size)
    v = embed(encoder, tokenizer, pairs, max_length, batch_size)
    return (u * v).sum(axis=1).astype(np.float64)


def cosine_line(encoder: Any, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], pairs: Sequence[str],
                targets: np.ndarray, max_length: int, batch_size: int) -> tuple[float, float]:
    """(scale, shift) of the line from these pairs' cosines under ``encoder`` to their targets: the bi-encoder's
    starting head and the cosine baseline's mapping."""
    return fit_line(cosines(encoder, tokenizer, texts, pairs, max_length, batch_size), targets)


class CosineSimilarityRegressor(torch.nn.Module):
    """Encoder → each text's mean-pooled, L2-normalised embedding → ``scale * cos(u, v) + shift``."""

    tailor_meta: ClassVar[dict[str, str]] = {"head": COSINE_HEAD}  # merged into tailor_model.json (stages/training.py)
    #: ``learning_rate: auto`` x 0.3 (train/auto.py): on 450 STS-B pairs 3e-5 gave RMSE 0.805, 1e-4 0.826
    auto_lr_factor = 0.3
    auto_lr_reason = "a bi-encoder: the encoder already scores similarity, small steps keep it"

    def __init__(self, encoder: torch.nn.Module, scale: float, shift: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.scale = torch.nn.Parameter(torch.tensor(float(scale)))
        self.shift = torch.nn.Parameter(torch.tensor(float(shift)))

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        return mean_pooled(batch, self.encoder(**batch))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pair_input_ids: torch.Tensor,
                pair_attention_mask: torch.Tensor, labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        similarity = (self.embed(input_ids, attention_mask) * self.embed(pair_input_ids, pair_attention_mask)).sum(-1)
        score = self.scale * similarity + self.shift
        loss = torch.nn.functional.mse_loss(score.float(), labels.float().reshape(-1)) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=score.unsqueeze(-1))

    def predict(self, tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], pairs: Sequence[str],
                max_length: int, batch_size: int) -> np.ndarray:
        similarity = cosines(self.encoder, tokenizer, texts, pairs, max_length, batch_size)
        return float(self.scale.detach()) * similarity + float(self.shift.detach())

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> None:
        """The encoder as transformers saves it, and the line beside it (safetensors, no pickle)."""
        self.encoder.save_pretrained(folder, **kwargs)
        save_file({"scale": self.scale.detach().reshape(1).contiguous(),
                   "shift": self.shift.detach().reshape(1).contiguous()}, str(Path(folder) / COSINE_FILE))


def load_cosine_model(encoder: torch.nn.Module, folder: Path) -> CosineSimilarityRegressor:
    line = load_file(str(folder / COSINE_FILE))
    return CosineSimilarityRegressor(encoder, float(line["scale"][0]), float(line["shift"][0]))


def tokenize_separately(tokenizer: PreTrainedTokenizerBase, texts: list[str], pairs: list[str],
                        max_length: int) -> dict[str, list[Any]]:
    """Each text of a pair encoded alone (no token types: a single text is segment 0 throughout)."""
    first = tokenizer(texts, truncation=True, max_length=max_length, return_token_type_ids=False)
    second = tokenizer(pairs, truncation=True, max_length=max_length, return_token_type_ids=False)
    return {"input_ids": first["input_ids"], "attention_mask": first["attention_mask"],
            PAIR_IDS: second["input_ids"], PAIR_MASK: second["attention_mask"],
            "length": [max(len(a), len(b)) for a, b in zip(first["input_ids"], second["input_ids"], strict=True)]}


class PairCollator:
    """Pads each side of a pair to its own longest text; rows without a second text are padded as usual."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        self.single = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if PAIR_IDS not in features[0]:
            return self.single(features)
        batch = self._side(features, "input_ids", "attention_mask") | self._side(features, PAIR_IDS, PAIR_MASK)
        for key in features[0].keys() - batch.keys() - {"length"}:  # labels, per-example weights
            batch[key] = torch.tensor([f[key] for f in features])
        return batch

    def _side(self, features: list[dict[str, Any]], ids: str, mask: str) -> dict[str, torch.Tensor]:
        padded = self.tokenizer.pad([{"input_ids": f[ids], "attention_mask": f[mask]} for f in features],
                                    return_tensors="pt")
        return {ids: padded["input_ids"], mask: padded["attention_mask"]}
