"""Regression: a float target per text or text pair (STS-B style), MSE or Huber loss.

``spec.py`` states its facts (``SPEC``), ``task.py`` holds the Task; importing the package loads only the spec.
"""

from __future__ import annotations

from tailorlm.tasks.regression.spec import SPEC

__all__ = ["SPEC"]
