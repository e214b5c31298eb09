"""How tailorlm's messages meet the screen: whole lines in logs and pipes, wrapped lines on a terminal.

A message written to a log or a pipe stays one line however long (grep finds it, a test reads it); on a
terminal the same message wraps at the terminal's width on word boundaries instead of running past the edge
(an 80×24 terminal shows every character; ``tests/test_first_hour.py`` drives ``tailor run`` in one).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console


def on_a_terminal(console: Console) -> bool:
    """Whether ``console`` writes to a real terminal (its file is a tty), whatever FORCE_COLOR says: colour may be
    forced into a log, but a log has no width to wrap at and no cursor to redraw a bar with."""
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(console.is_terminal and isatty is not None and isatty())
    except (OSError, ValueError):  # a closed file
        return False


class LineConsole(Console):
    """A rich console that soft-wraps (keeps each message one line) unless it writes to a terminal."""

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return not on_a_terminal(self)

    @soft_wrap.setter
    def soft_wrap(self, value: Any) -> None:  # Console.__init__ assigns it: the file decides instead
        pass
