"""Causal-LM supervised fine-tuning (``task: generation``): ``spec.py`` states its facts (``SPEC``), ``task.py`` holds
the Task.

The task class loads on first use (``__getattr__`` below), so importing this package does not import transformers
or the task's own dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tailorlm.tasks.generation.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.tasks.generation.task import GenerationTask


def __getattr__(name: str) -> Any:
    if name == "GenerationTask":
        from tailorlm.tasks.generation.task import GenerationTask

        return GenerationTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPEC", "GenerationTask"]
