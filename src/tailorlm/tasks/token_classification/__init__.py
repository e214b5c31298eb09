"""Token classification (named entities and other word tags, BIO).

``spec.py`` states its facts (``SPEC``), ``task.py`` holds the Task.

Importing the package loads only the spec; ``tasks.get_task`` imports ``task.py`` (and transformers)
on first use.
"""

from __future__ import annotations

from tailorlm.tasks.token_classification.spec import SPEC

__all__ = ["SPEC"]
