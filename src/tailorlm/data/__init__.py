"""Data preparation: read labelled files, clean them, split them, and report on their quality.

The pipeline calls :func:`prepare_data` with the recipe's ``data`` section; ``tailor eval`` and
``tailor predict`` read single files with :func:`load_labelled_file`. Every dropped row becomes a reject
record (file, row, reason, detail) and every unusable file a one-line :class:`~tailorlm.errors.DataError`.
"""

from __future__ import annotations

from tailorlm.data.prepare import PreparedData, load_labelled_file, load_texts, prepare_data, write_rejects

__all__ = ["PreparedData", "load_labelled_file", "load_texts", "prepare_data", "write_rejects"]
