"""Progress bars for the steps that take more than a moment outside training: baselines, ``tailor eval``,
``tailor predict --input``, ``tailor audit``.

A command opens one bar (``progress_bar(console, "scoring")``); the code doing the work reports texts as it
goes (``advance``), wherever it is: ``evaluate/inference.forward_sorted`` does for every batched forward pass,
so the baselines, evaluation, prediction and audit of every classifier move the bar without knowing about it.
Work that does not report (a generation loop) still shows a spinner and the time spent. The bar is drawn only on
a terminal and disappears when the step ends, so logs and pipes get the same lines as before. Training keeps
its own bar (train/callbacks.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from tailorlm.terminal import on_a_terminal

_current: ContextVar[tuple[Progress, Any] | None] = ContextVar("tailorlm_progress", default=None)


@contextmanager
def progress_bar(console: Console, label: str) -> Iterator[None]:
    """A transient bar labelled ``label`` while the block runs (nothing when ``console`` is not a terminal)."""
    if not on_a_terminal(console) or _current.get() is not None:  # one bar at a time; pipes get none
        yield
        return
    progress = Progress(SpinnerColumn(), TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("texts"), TimeElapsedColumn(), console=console, transient=True)
    task = progress.add_task(label, total=None)
    token = _current.set((progress, task))
    try:
        with progress:
            yield
    finally:
        _current.reset(token)


def expect(count: int) -> None:
    """``count`` more texts are about to be processed (the bar's total grows by it)."""
    current = _current.get()
    if current is not None and count:
        progress, task = current
        total = progress.tasks[0].total or 0
        progress.update(task, total=total + count)


def counts() -> tuple[int, int] | None:
    """(texts done, texts expected) of the open bar, or None when none is open (tests, and a caller's summary)."""
    current = _current.get()
    if current is None:
        return None
    task = current[0].tasks[0]
    return int(task.completed), int(task.total or 0)


def advance(count: int) -> None:
    """``count`` texts are done."""
    current = _current.get()
    if current is not None and count:
        progress, task = current
        progress.advance(task, count)
