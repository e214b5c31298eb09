"""The linear probe as a model that predict, eval and serve use like any other (``training.keep_best_of``).

On a small or hard labelled set a fine-tune can lose to logistic regression on the pretrained encoder's frozen
sentence embeddings (the ``linear_probe`` baseline). With ``training.keep_best_of: [tuned, linear_probe]`` the run
keeps whichever scores better on the *validation* split (never the test split, which stays the honest judge of
both). A kept probe is saved as the pretrained encoder plus ``probe_head.safetensors``: the logistic regression
rewritten as one linear layer over the L2-normalised mean-pooled embedding, whose softmax is exactly sklearn's
``predict_proba``. ``ProbeClassifier`` puts the two together behind the forward of a sequence classifier
(``outputs.logits``), so the classification task's inference code needs no branch for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers.modeling_outputs import SequenceClassifierOutput

from tailorlm.evaluate.inference import mean_pooled

#: tailor_model.json's ``head`` for a saved probe; models/saved.py loads such a folder through load_probe
PROBE_HEAD = "linear_probe"
PROBE_FILE = "probe_head.safetensors"
#: the logit of a label the probe never saw in training: its probability is zero in sklearn's terms too
ABSENT_LOGIT = -1e4


@dataclass
class ProbeHead:
    """Logistic regression as ``logits = embedding @ weight.T + bias`` over every label of the run."""

    weight: np.ndarray  # (labels, hidden)
    bias: np.ndarray  # (labels,)

    @classmethod
    def from_sklearn(cls, probe: Any, n_labels: int) -> ProbeHead:
        """sklearn's binary model is one logit for ``classes_[1]``: softmax over (0, z) is its sigmoid(z); the
        multinomial model's logits are its decision function. Labels absent from training get ABSENT_LOGIT."""
        coef, intercept = np.asarray(probe.coef_, dtype=np.float64), np.asarray(probe.intercept_, dtype=np.float64)
        classes = np.asarray(probe.classes_)
        if coef.shape[0] == 1 and len(classes) == 2:
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.array([0.0, intercept[0]])
        weight = np.zeros((n_labels, coef.shape[1]))
        bias = np.full(n_labels, ABSENT_LOGIT)
        weight[classes], bias[classes] = coef, intercept
        return cls(weight, bias)

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return embeddings @ self.weight.T + self.bias


class ProbeClassifier(torch.nn.Module):
    """Encoder → mean pooling over real tokens → L2 norm → the probe's linear layer, as a sequence classifier."""

    def __init__(self, encoder: torch.nn.Module, head: ProbeHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config
        self.classifier = torch.nn.Linear(head.weight.shape[1], head.weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(torch.as_tensor(head.weight, dtype=torch.float32))
            self.classifier.bias.copy_(torch.as_tensor(head.bias, dtype=torch.float32))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **inputs: Any) -> SequenceClassifierOutput:
        inputs.pop("labels", None)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, **inputs}
        outputs = self.encoder(**batch)
        return SequenceClassifierOutput(logits=self.classifier(mean_pooled(batch, outputs)))

    def save_pretrained(self, folder: str | Path, **kwargs: Any) -> None:
        """The encoder as transformers saves it, and the head beside it (safetensors, no pickle)."""
        self.encoder.save_pretrained(folder, **kwargs)
        save_file({"weight": self.classifier.weight.detach().contiguous(),
                   "bias": self.classifier.bias.detach().contiguous()}, str(Path(folder) / PROBE_FILE))


def load_probe_head(folder: Path) -> ProbeHead:
    tensors = load_file(str(folder / PROBE_FILE))
    return ProbeHead(tensors["weight"].double().numpy(), tensors["bias"].double().numpy())
