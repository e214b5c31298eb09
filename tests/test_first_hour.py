"""The first hour of a new user (issue 20): one spelling of the output flag, outputs that keep what they were
given, and a terminal run that fits 80 columns."""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import missing_component, run_cli

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


def _tmux() -> str:
    """The tmux binary, or a skip (a failure under CI=true, where the test must run)."""
    found = shutil.which("tmux") or ("/usr/bin/tmux" if Path("/usr/bin/tmux").is_file() else None)
    if found is None:
        missing_component("tmux is not installed: the 80x24 terminal test cannot drive a terminal (apt-get install "
                          "tmux)")
    return found


@pytest.mark.timeout(400)
def test_tailor_run_fits_an_80_by_24_terminal(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`tailor run` in a real 80x24 terminal (tmux): no line of what it prints runs past column 80 (captured with
    the terminal's own wraps joined back, so an overflowing line shows at its full length)."""
    import pandas as pd

    import tailorlm
    from tests.conftest import sentiment_rows

    tmux = _tmux()
    pd.DataFrame(sentiment_rows(80)).to_csv(tmp_path / "reviews.csv", index=False)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "a-run-folder-with-a-fairly-long-name-to-wrap"),
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(tmp_path / "reviews.csv"), "split": {"validation": 0.2, "test": 0.25}},
        "training": {"epochs": 2, "batch_size": 16, "learning_rate": 1e-3, "early_stopping_patience": None},
    }))
    env = {"PYTHONPATH": str(Path(tailorlm.__file__).parents[1]), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false", "TAILORLM_TOKENIZED_CACHE": str(tmp_path / "cache")}
    command = (f"cd {shlex.quote(str(tmp_path))} && env {' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items())} "
               f"{shlex.quote(sys.executable)} -m tailorlm run recipe.yaml; echo TAILOR-EXIT:$?; sleep 300")
    socket = f"tailorlm-test-{os.getpid()}"
    base = [tmux, "-L", socket, "-f", "/dev/null"]
    subprocess.run([*base, "new-session", "-d", "-x", "80", "-y", "24", "-s", "run", command], check=True)
    try:
        deadline = time.monotonic() + 360
        screen = ""
        while time.monotonic() < deadline:
            screen = subprocess.run([*base, "capture-pane", "-p", "-J", "-S", "-", "-t", "run"], check=True,
                                    capture_output=True, text=True).stdout
            if "TAILOR-EXIT:" in screen:
                break
            time.sleep(1)
    finally:
        subprocess.run([*base, "kill-server"], check=False, capture_output=True)
    assert "TAILOR-EXIT:0" in screen, screen
    assert "run directory:" in screen and "acc" in screen and "F1" in screen, screen
    lines = [line.rstrip() for line in screen.splitlines()]
    too_wide = [f"{len(line)}: {line}" for line in lines if len(line) > 80]
    assert not too_wide, "lines past column 80:\n" + "\n".join(too_wide)


class _Screen(io.StringIO):
    """A file that says it is a terminal, as a tty does."""

    def isatty(self) -> bool:
        return True


def test_forward_passes_move_the_open_progress_bar_on_a_terminal_only(tiny_model_dir: Path) -> None:
    """Baselines, eval, predict and audit all batch through forward_sorted, which reports to the bar."""
    from rich.console import Console
    from transformers import AutoModel, AutoTokenizer

    from tailorlm import progress
    from tailorlm.evaluate.inference import forward_sorted

    model, tokenizer = AutoModel.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [f"text number {i} of the batch" for i in range(10)]

    def head(batch: object, outputs: object) -> object:
        return outputs.last_hidden_state[:, 0]  # type: ignore[attr-defined]

    screen = _Screen()
    terminal = Console(file=screen, force_terminal=True, width=80)
    with progress.progress_bar(terminal, "scoring"):
        forward_sorted(model, tokenizer, texts, 16, 4, head)
        assert progress.counts() == (10, 10)
    assert "scoring" in screen.getvalue() and progress.counts() is None
    log = io.StringIO()
    with progress.progress_bar(Console(file=log, width=80), "scoring"):
        forward_sorted(model, tokenizer, texts, 16, 4, head)
        assert progress.counts() is None  # no bar in a log or a pipe
    assert log.getvalue() == ""


def test_messages_wrap_on_a_terminal_and_stay_one_line_in_a_log() -> None:
    from tailorlm.terminal import LineConsole

    message = "audit: " + " ".join(f"finding-{i}" for i in range(30))  # about 300 characters
    log = io.StringIO()
    LineConsole(file=log, width=80).print(message)
    assert log.getvalue().count("\n") == 1
    screen = _Screen()
    LineConsole(file=screen, width=80, force_terminal=True).print(message, highlight=False)
    forced = io.StringIO()  # FORCE_COLOR into a log: still one line
    LineConsole(file=forced, width=80, force_terminal=True).print(message, highlight=False)
    assert forced.getvalue().count("\n") == 1
    lines = screen.getvalue().splitlines()
    assert len(lines) > 2 and all(len(line) <= 80 for line in lines)
