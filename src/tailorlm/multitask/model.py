"""One shared encoder, one head per task; saved and reloaded as one folder.

Each task builds its own transformers model as a single-task run does (``Task.build_model``: the Auto class, label
maps, dropout), then its body (``model.base_model_prefix``, e.g. ``bert``) is replaced by the one shared encoder.
So every task's model is still a real ``AutoModelFor...`` (its ``view``) and the task's own evaluation and
prediction code runs on it unchanged; the container registers the encoder once and each task's remaining modules
(the head) under ``heads.<name>``, so a state dict holds every weight exactly once. With LoRA the shared encoder
is wrapped once by peft (one adapter shared by all tasks); the heads stay fully trainable.

Saved folder (``model/``)::

    tailor_model.json          {"multi_task": true, "tasks": {name: {task, meta}}, ...}
    encoder/                   the shared encoder (LoRA merged), safetensors, and the tokenizer
    heads/<name>/config.json   the task model's config (label maps, num_labels, problem type)
    heads/<name>/head.safetensors   the head's weights only
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from tailorlm.errors import ModelError, UserError
from tailorlm.multitask.balance import UncertaintyWeights

ENCODER_DIR = "encoder"
HEADS_DIR = "heads"
HEAD_WEIGHTS = "head.safetensors"


def body_name(model: nn.Module) -> str:
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or not hasattr(model, prefix):
        raise ModelError(f"{type(model).__name__} has no encoder body to share (base_model_prefix); multi-task "
                         "learning needs encoder models with a head")
    return prefix


class MultiTaskModel(nn.Module):
    """The shared ``encoder``, ``heads[name]`` per task, and (uncertainty weighting) the learned log-variances."""

    def __init__(self, encoder: nn.Module, task_models: dict[str, nn.Module], uncertainty: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict()
        self.names = list(task_models)
        self._views: dict[str, nn.Module] = {}
        for name, model in task_models.items():
            prefix = body_name(model)
            setattr(model, prefix, encoder)
            self.heads[name] = nn.ModuleDict({child: module for child, module in model.named_children()
                                              if child != prefix})
            self._views[name] = model
        self.uncertainty = UncertaintyWeights(len(task_models)) if uncertainty else None

    def view(self, name: str) -> nn.Module:
        """Task ``name``'s own transformers model (shared encoder + its head)."""
        return self._views[name]

    def forward(self, task: str, **inputs: Any) -> Any:
        return self._views[task](**inputs)

    def train(self, mode: bool = True) -> MultiTaskModel:
        super().train(mode)
        for view in self._views.values():
            view.train(mode)
        return self

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def head_parameters(self, name: str) -> list[nn.Parameter]:
        return [p for p in self.heads[name].parameters() if p.requires_grad]


def merged_encoder(encoder: nn.Module) -> nn.Module:
    """The encoder as plain weights: a peft-wrapped one is merged into a copy (the training model is unchanged)."""
    if hasattr(encoder, "merge_and_unload"):
        import copy

        return copy.deepcopy(encoder).merge_and_unload()
    return encoder


def save_multitask(model: MultiTaskModel, tokenizer: Any, folder: Path, meta: dict[str, Any],
                   task_meta: dict[str, dict[str, Any]]) -> None:
    """Write the encoder once, each head's config and weights, and tailor_model.json into ``folder``."""
    from safetensors.torch import save_file

    from tailorlm.models.registry import write_model_meta

    encoder = merged_encoder(model.encoder)
    encoder.save_pretrained(folder / ENCODER_DIR, safe_serialization=True)
    tokenizer.save_pretrained(folder / ENCODER_DIR)
    for name in model.names:
        head_dir = folder / HEADS_DIR / name
        head_dir.mkdir(parents=True, exist_ok=True)
        model.view(name).config.save_pretrained(head_dir)
        state = {k: v.detach().contiguous().cpu() for k, v in model.heads[name].state_dict().items()}
        save_file(state, head_dir / HEAD_WEIGHTS, metadata={"format": "pt"})
    write_model_meta(folder, meta | {"multi_task": True, "tasks": task_meta})


def task_names(meta: dict[str, Any]) -> list[str]:
    return list(meta.get("tasks") or {})


def pick_task(meta: dict[str, Any], task: str | None, folder: Path) -> str:
    """The task ``--task`` names, checked against the saved tasks; one line naming them otherwise."""
    names = task_names(meta)
    if task is None:
        raise UserError(f"{folder}: a multi-task model ({', '.join(names)}); pass --task NAME")
    if task not in names:
        raise UserError(f"--task '{task}': not a task of {folder}; its tasks are: {', '.join(names)}")
    return task


def load_task_model(folder: Path, task: str, allow_pickle: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """(model, tokenizer, the task's tailor metadata) of one task of a saved multi-task folder."""
    from safetensors.torch import load_file
    from transformers import AutoConfig

    from tailorlm.models.loading import load_pretrained, load_tokenizer
    from tailorlm.models.registry import check_local_model, read_model_meta
    from tailorlm.recipe import ModelConfig
    from tailorlm.safety import check_remote_code
    from tailorlm.tasks import get_spec

    meta = read_model_meta(folder)
    entry = meta["tasks"][task]
    encoder_dir, head_dir = folder / ENCODER_DIR, folder / HEADS_DIR / task
    fix = "tailorlm saves models without custom code; remove 'auto_map' from its config files, or re-train"
    for part in (encoder_dir, head_dir):
        check_remote_code(part, str(part), False, fix=fix)
    resolved = check_local_model(encoder_dir, allow_pickle=allow_pickle, what="MODEL_DIR")
    cfg = ModelConfig(allow_pickle=allow_pickle)
    tokenizer = load_tokenizer(resolved, cfg)
    try:
        config = AutoConfig.from_pretrained(head_dir)
        weights = load_file(head_dir / HEAD_WEIGHTS)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ModelError(f"{head_dir}: cannot read the saved head ({str(exc).splitlines()[0][:200]})") from None
    auto_class = get_spec(entry["task"]).auto_class()
    model = load_pretrained(auto_class, resolved, cfg, config=config, what="MODEL_DIR")
    missing = [k for k in model.load_state_dict(weights, strict=False).missing_keys
               if not k.startswith(body_name(model) + ".")]
    if missing:
        raise ModelError(f"{head_dir}: the saved head lacks {', '.join(missing[:3])}; re-train or re-save")
    model.eval()
    return model, tokenizer, entry["meta"]


def same_tokenizer(a: Any, b: Any) -> bool:
    """Two tokenizers that cut every text the same way: same class, vocabulary and special tokens."""
    return (type(a).__name__ == type(b).__name__ and a.get_vocab() == b.get_vocab()
            and a.all_special_tokens == b.all_special_tokens)
