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


def test_tune_summaries_speak_plainly_and_trial_ticks_are_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.tune import report

    assert report.counts_text({"complete": 2}) == "2 trials (2 complete)"
    assert report.counts_text({"complete": 3, "pruned": 1, "fail": 1}) == "5 trials (3 complete, 1 pruned, 1 failed)"
    assert "mostly noise" in (report.importance_caveat(2) or "") and report.importance_caveat(12) is None
    drawn: list = []
    monkeypatch.setattr(report, "to_svg", lambda fig: drawn.append(fig) or "svg")
    rows = [{"number": n, "value": v, "state": "complete"} for n, v in ((0, 0.5), (1, 0.7))]
    assert report.history_chart(rows, maximize=True) == "svg"
    ticks = drawn[0].axes[0].get_xticks()
    assert all(float(t).is_integer() for t in ticks), ticks  # no "trial 0.5"
