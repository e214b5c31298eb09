"""Run the real `tailor` entry point in-process and capture what a user would see."""

from __future__ import annotations

import sys

import pytest


def run_cli(args: list[str]) -> tuple[int, str, str]:
    """Call ``tailorlm.cli.main`` with ``args``; return (exit code, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from tailorlm import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["tailor", *args]
    code = 0
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            cli.out.file = stdout
            cli.err.file = stderr
            try:
                cli.main()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        cli.out.file = None  # back to sys.stdout / sys.stderr
        cli.err.file = None
    return code, stdout.getvalue(), stderr.getvalue()


__all__ = ["pytest", "run_cli"]
