"""Data preparation: read the recipe's files, clean them, split them, and report on their quality.

Every task's data goes through one pipeline, :func:`tailorlm.data.pipeline.prepare`, driven by the task's row spec
(``tasks/<name>/data.py``: ``ClassificationRows``, ``QARows``, ``TokenRows``, ``GenerationRows``, ``PairRows``,
each beside the task's own file readers). Every dropped row becomes a reject record (file, row, reason, detail)
and every unusable file a one-line :class:`~tailorlm.errors.DataError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tailorlm.data.pipeline import PreparedData, RowSpec, write_rejects

__all__ = ["PreparedData", "RowSpec", "write_rejects"]


def __getattr__(name: str) -> Any:
    """The pipeline's names on first use: ``tailorlm.data.load`` alone (the CLI's header checks) needs no pandas."""
    if name in __all__:
        from tailorlm.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'tailorlm.data' has no attribute {name!r}")
