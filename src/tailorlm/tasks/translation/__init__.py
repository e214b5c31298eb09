"""Translation and other text-to-text rewrites with a seq2seq model.

``spec.py`` states its facts (``SPEC``), ``task.py`` holds the Task.

The task class loads on first use (``__getattr__`` below), so importing this package does not import transformers
or the task's own dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tailorlm.tasks.translation.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.tasks.translation.task import TranslationTask


def __getattr__(name: str) -> Any:
    if name == "TranslationTask":
        from tailorlm.tasks.translation.task import TranslationTask

        return TranslationTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPEC", "TranslationTask"]
