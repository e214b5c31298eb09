"""The first hour of a new user (issue 20): one spelling of the output flag, outputs that keep what they were
given, and a terminal run that fits 80 columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli

OUT_COMMANDS = ["eval", "predict", "audit", "compare", "review", "export"]


@pytest.mark.parametrize("command", OUT_COMMANDS)
def test_every_command_that_writes_a_file_spells_it_out(command: str) -> None:
    code, stdout, _ = run_cli([command, "--help"])
    assert code == 0
    assert "--out" in stdout and "--output" not in stdout, "one spelling in the help; --output is a hidden alias"


def test_the_old_output_spelling_still_works_but_not_beside_a_different_out(tmp_path: Path) -> None:
    code, _, stderr = run_cli(["predict", str(tmp_path), "--text", "x", "--out", "a.jsonl", "--output", "b.jsonl"])
    assert code == 2 and "two output files" in stderr
