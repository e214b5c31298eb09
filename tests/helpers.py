"""Run the real `tailor` entry point in-process and capture what a user would see."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

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


def missing_component(message: str) -> NoReturn:
    """A real component a test needs (chromium, PostgreSQL, tmux) is absent: a skip on a developer machine, a
    failure under CI (``CI=true``, which .ci/run sets after installing them), so the test cannot quietly stop
    running there."""
    if os.environ.get("CI", "").strip().lower() in ("true", "1", "yes"):
        pytest.fail(f"{message} (CI=true: .ci/run installs it, so its absence is a CI failure)", pytrace=False)
    pytest.skip(message)


def assert_skips_here_and_fails_under_ci(require: Callable[[], Any], monkeypatch: pytest.MonkeyPatch,
                                         skip_match: str | None = None) -> None:
    """``require()`` (with its component made absent by the caller) fails under CI=true and skips otherwise."""
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=skip_match):
        require()
