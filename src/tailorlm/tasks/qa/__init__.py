"""Extractive question answering (SQuAD v1.1 / v2): ``spec.py`` states its facts (``SPEC``), ``task.py`` holds
the Task.

Importing the package loads only the spec; ``tasks.get_task`` imports ``task.py`` (and transformers)
on first use.
"""

from __future__ import annotations

from tailorlm.tasks.qa.spec import SPEC

__all__ = ["SPEC"]
