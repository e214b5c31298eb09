"""A LoRA adapter folded into its base weights: one plain model folder that serves without peft."""

from __future__ import annotations

import shutil
from pathlib import Path

from tailorlm.models.registry import TAILOR_META, write_model_meta
from tailorlm.rundir import replace_dir
from tailorlm.safety import check_export_dir


def export_merged(adapter_dir: Path, out: Path) -> Path:
    """Merge ``adapter_dir`` (a saved LoRA run model) into ``out``, written atomically; returns ``out``."""
    from tailorlm.models.saved import load_saved_model

    check_export_dir(out, adapter_dir)  # before the minutes of merging: never onto a folder of the user's
    loaded = load_saved_model(adapter_dir)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    loaded.model.save_pretrained(tmp, safe_serialization=True)
    loaded.tokenizer.save_pretrained(tmp)
    meta = dict(loaded.meta) | {"peft": "none", "merged_from_adapter": str(adapter_dir)}
    write_model_meta(tmp, meta)
    replace_dir(tmp, out, TAILOR_META)
    return out
