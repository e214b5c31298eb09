"""Reloading a model that tailorlm saved (full weights or a LoRA adapter) for eval, predict and serving.

Everything is read through models/loading.py, the same safe loader a run uses for ``model.name``: no code shipped
in the folder (``auto_map``) is imported, and weights are safetensors unless pickle is allowed. A saved folder is
as untrusted as any downloaded one: it may have been copied from elsewhere or edited.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoConfig

from tailorlm.data.clean import saved_cleaning
from tailorlm.errors import ModelError
from tailorlm.models.loading import load_pretrained, load_tokenizer
from tailorlm.models.registry import ResolvedModel, check_local_model, read_model_meta, resolve_model
from tailorlm.recipe import CleanConfig, ModelConfig
from tailorlm.safety import check_remote_code
from tailorlm.tasks import get_spec
from tailorlm.tasks.classification.probe import PROBE_HEAD, ProbeClassifier, load_probe_head
from tailorlm.tasks.regression.bi_encoder import COSINE_HEAD, load_cosine_model


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    meta: dict[str, Any]
    path: Path

    @property
    def labels(self) -> list[str]:
        labels = self.meta.get("labels")
        if labels:
            return list(labels)
        id2label = getattr(self.model.config, "id2label", {}) or {}
        return [id2label[i] for i in sorted(id2label)]

    @property
    def task(self) -> str:
        return self.meta.get("task", "classification")

    @property
    def clean(self) -> CleanConfig:
        """The cleaning the training texts got (``data.clean``, saved in tailor_model.json; defaults if absent)."""
        return saved_cleaning(self.meta)

    @property
    def max_length(self) -> int:
        return int(self.meta.get("max_length") or min(getattr(self.tokenizer, "model_max_length", 512), 512))


def model_folder(path: Path) -> Path:
    """Accept a run directory as well as its model/ folder."""
    if (path / "model").is_dir() and not (path / "config.json").exists():
        return path / "model"
    return path


def load_saved_model(path: str | Path, *, allow_pickle: bool = False, task: str | None = None) -> LoadedModel:
    """Load ``path`` (a run directory or a model folder) for inference; LoRA adapters are merged for speed.

    A multi-task folder (multitask/model.py) needs ``task``, the name of one of its tasks: that task's model
    (the shared encoder with its head) and metadata are loaded, so eval, predict and serve treat it like any."""
    folder = Path(path)
    if not folder.exists():
        raise ModelError(f"{folder}: model folder does not exist; pass a run directory or its model/ folder")
    folder = model_folder(folder)
    if read_model_meta(folder).get("multi_task"):
        from tailorlm.multitask.model import load_task_model, pick_task

        name = pick_task(read_model_meta(folder), task, folder)
        model, tokenizer, meta = load_task_model(folder, name, allow_pickle=allow_pickle)
        if meta.get("temperature"):
            from tailorlm.evaluate.calibration import set_temperature

            set_temperature(model, meta["temperature"])
        return LoadedModel(model=model, tokenizer=tokenizer, meta=meta | {"task_name": name}, path=folder)
    if task is not None:
        raise ModelError(f"--task '{task}': {folder} holds a single-task model; drop --task")
    resolved = check_local_model(folder, allow_pickle=allow_pickle, what="MODEL_DIR")
    meta = read_model_meta(folder)
    auto_class = get_spec(meta.get("task", "classification")).auto_class()
    check_remote_code(folder, str(folder), False, fix="tailorlm saves models without custom code, so this folder "
                      "was changed or comes from elsewhere: remove 'auto_map' from its config files, or re-train")
    cfg = ModelConfig(allow_pickle=allow_pickle)  # never trust_remote_code: nothing in the folder is run
    tokenizer = load_tokenizer(resolved, cfg)  # refuses an auto_map before transformers reads the folder
    if meta.get("head") == PROBE_HEAD:  # a kept linear probe (training.keep_best_of): encoder + probe head
        from transformers import AutoModel

        encoder = load_pretrained(AutoModel, resolved, cfg, what="MODEL_DIR")
        model = ProbeClassifier(encoder, load_probe_head(folder))
    elif meta.get("head") == COSINE_HEAD:  # regression's bi-encoder: encoder + the line of its cosine
        from transformers import AutoModel

        model = load_cosine_model(load_pretrained(AutoModel, resolved, cfg, what="MODEL_DIR"), folder)
    elif resolved.is_adapter:
        model = _load_adapter(resolved, meta, auto_class, cfg)
    else:
        model = load_pretrained(auto_class, resolved, cfg, what="MODEL_DIR")
    model.eval()
    if meta.get("temperature"):  # fitted at training time (evaluate/calibration.py); adapters keep it only here
        from tailorlm.evaluate.calibration import set_temperature

        set_temperature(model, meta["temperature"])
    return LoadedModel(model=model, tokenizer=tokenizer, meta=meta, path=folder)


def _load_adapter(adapter: ResolvedModel, meta: dict[str, Any], auto_class: Any, cfg: ModelConfig) -> Any:
    """The base model (resolved and loaded like ``model.name``) with the adapter merged in."""
    from peft import PeftModel

    folder = adapter.path
    base_name = meta.get("base_model")
    if not base_name:
        raise ModelError(f"{folder}: a LoRA adapter without tailor_model.json; cannot tell its base model")
    beside = folder / base_name
    if not Path(base_name).is_absolute() and base_name.startswith("..") and beside.is_dir():
        base_name = str(beside.resolve())  # a base inside the run directory, e.g. adapted/ (run.py _portable_base)
    base = resolve_model(base_name, allow_pickle=cfg.allow_pickle)
    config = load_pretrained(AutoConfig, adapter, cfg, what="MODEL_DIR")
    base_model = load_pretrained(auto_class, base, cfg, config=config, what="the adapter's base_model")
    try:
        return PeftModel.from_pretrained(base_model, folder).merge_and_unload()
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ModelError(f"{folder}: cannot load the saved adapter ({first})") from None
