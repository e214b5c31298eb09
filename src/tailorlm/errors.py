"""Errors a user can fix.

Everything a user can act on (a missing file, a bad column, an unknown recipe key) is a ``UserError``: the CLI
prints its message as one line on stderr and exits with code 2. Anything else is a bug and may raise.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input, with a message that names where it is and how to fix it."""

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        # one line whatever it quotes (a column named "\n", a cell with a line break): shown escaped
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        self.problem = message
        self.fix = fix
        super().__init__(f"{message} (fix: {fix})" if fix else message)


class RecipeError(UserError):
    """The recipe (YAML or a --set override) is invalid."""


class DataError(UserError):
    """A data file cannot be read or holds no usable rows."""


class ModelError(UserError):
    """A model name, path or PEFT setting cannot be used."""
