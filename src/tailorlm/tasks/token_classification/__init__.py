"""Token classification (named entities and other word tags, BIO).

``spec.py`` states its facts (``SPEC``), ``task.py`` holds the Task.

The task class loads on first use (``__getattr__`` below), so importing this package does not import transformers
or the task's own dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tailorlm.tasks.token_classification.spec import SPEC

if TYPE_CHECKING:
    from tailorlm.tasks.token_classification.task import TokenClassificationTask


def __getattr__(name: str) -> Any:
    if name == "TokenClassificationTask":
        from tailorlm.tasks.token_classification.task import TokenClassificationTask

        return TokenClassificationTask
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["SPEC", "TokenClassificationTask"]
