"""How tailorlm's messages meet the screen: whole lines in logs and pipes, wrapped lines on a terminal.

A message written to a log or a pipe stays one line however long (grep finds it, a test reads it); on a
terminal the same message wraps at the terminal's width on word boundaries instead of running past the edge
(an 80×24 terminal shows every character; ``tests/test_first_hour.py`` drives ``tailor run`` in one).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console


class LineConsole(Console):
    """A rich console that soft-wraps (keeps each message one line) unless it writes to a terminal."""

    @property  # type: ignore[override]
    def soft_wrap(self) -> bool:
        return not self.is_terminal

    @soft_wrap.setter
    def soft_wrap(self, value: Any) -> None:  # Console.__init__ assigns it: the file decides instead
        pass
