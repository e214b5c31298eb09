"""Data preparation: read the recipe's files, clean them, split them, and report on their quality.

Every task's data goes through one pipeline, :func:`tailorlm.data.pipeline.prepare`, driven by the task's row spec
(:class:`ClassificationRows` for labelled texts here; the other tasks' beside their readers). ``tailor eval`` and
``tailor predict`` read single labelled files with :func:`load_labelled_file`. Every dropped row becomes a reject
record (file, row, reason, detail) and every unusable file a one-line :class:`~tailorlm.errors.DataError`.
"""

from __future__ import annotations

from tailorlm.data.pipeline import PreparedData, RowSpec, write_rejects
from tailorlm.data.prepare import ClassificationRows, load_labelled_file, load_texts

__all__ = ["ClassificationRows", "PreparedData", "RowSpec", "load_labelled_file", "load_texts", "write_rejects"]
