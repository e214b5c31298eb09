"""Text classification (sentiment, intent, topic, emotion): ``spec.py`` states its facts (``SPEC``), ``task.py`` holds
the Task.

The task class loads on first use (``__getattr__`` below), so importing this package does not import transformers
or the task's own dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tailorlm.tasks.classification.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.tasks.classification.task import ClassificationTask


def __getattr__(name: str) -> Any:
    if name == "ClassificationTask":
        from tailorlm.tasks.classification.task import ClassificationTask

        return ClassificationTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPEC", "ClassificationTask"]
