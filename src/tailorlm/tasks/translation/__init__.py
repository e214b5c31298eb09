"""Translation and other text-to-text rewrites with a seq2seq model.

``spec.py`` states its facts (``SPEC``), ``task.py`` holds the Task.

Importing the package loads only the spec; ``tasks.get_task`` imports ``task.py`` (and transformers)
on first use.
"""

from __future__ import annotations

from tailorlm.tasks.translation.spec import SPEC

__all__ = ["SPEC"]
