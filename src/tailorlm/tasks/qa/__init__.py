"""Extractive question answering (SQuAD v1.1 / v2): ``spec.py`` states its facts (``SPEC``), ``task.py`` holds
the Task.

The task class loads on first use (``__getattr__`` below), so importing this package does not import transformers
or the task's own dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tailorlm.tasks.qa.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.tasks.qa.task import QATask


def __getattr__(name: str) -> Any:
    if name == "QATask":
        from tailorlm.tasks.qa.task import QATask

        return QATask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPEC", "QATask"]
