"""The adapt room: making the pretrained model speak the team's domain before the task is learned.

``adapt.pretrain`` (``pretrain.py``, ``corpus.py``): domain-adaptive continued pretraining on unlabelled domain
text. ``run.py`` calls :func:`adapt_model` once, between preparing the data and building the task model.
``adapt.self_train`` (``self_train.py``, classification): after the test evaluation, the tuned model pseudo-labels
unlabelled text and a student retrained on train + pseudo replaces it only if its validation metric is not worse.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from tailorlm.data.pipeline import PreparedData
from tailorlm.models.registry import ResolvedModel, check_local_model
from tailorlm.recipe import Recipe
from tailorlm.rundir import RunDir

__all__ = ["adapt_model"]


def adapt_model(recipe: Recipe, resolved: ResolvedModel, tokenizer: Any, data: PreparedData, run_dir: RunDir,
                console: Console) -> tuple[ResolvedModel, dict[str, Any]]:
    """The model to fine-tune (``resolved``, or its domain-adapted copy) and metrics.json's ``adapt`` entry.

    A resumed run whose ``adapted/`` is complete reuses it: its checkpoints were trained on that body.
    """
    if not recipe.adapt.pretrain:
        return resolved, {}
    from tailorlm.adapt.pretrain import adapted_dir, continue_pretraining, is_complete, read_stats

    folder = adapted_dir(run_dir)
    if getattr(run_dir, "resume_from", None) is not None and is_complete(folder):
        console.print(f"domain adaptation: reusing {folder} (resumed run)")
        body = check_local_model(folder, what="adapt")
    else:
        body = continue_pretraining(recipe, resolved, tokenizer, data, run_dir, console)
    return body, {"pretrain": read_stats(folder)}
