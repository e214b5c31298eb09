"""The target domain's text (adapt.target_unlabeled, adapt/target.py): read leak-checked before training, and
every bad target input is one line naming the key (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_bad_input import assert_one_line_error


@pytest.fixture()
def target_recipe(tmp_path: Path, tiny_recipe: Path) -> tuple[Path, Path]:
    target = tmp_path / "target.txt"
    rows = sentiment_rows(260, seed=5)[200:]
    target.write_text("\n".join(r["text"] + " on the island" for r in rows) + "\n")
    return tiny_recipe, target


def test_target_text_is_read_and_leak_checked(target_recipe: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, target = target_recipe
    train = pd.read_csv(Path(str(recipe.parent / "reviews.csv")))
    with target.open("a") as handle:  # two copies of training texts: they must not count as target text
        handle.write(f"{train['text'][0]}\n{train['text'][1].upper()}!\n")
    out = tmp_path / "run-target"
    code, _, stderr = run_cli(["run", str(recipe), "--set", f"output_dir={out}", "--set", "training.epochs=1",
                               "--set", f"adapt.target_unlabeled={target}", "--set", "baseline.linear_probe=false"])
    assert code == 0, stderr
    adapt = json.loads((out / "metrics.json").read_text())["adapt"]
    section = adapt["target"]
    assert section["dropped_leaking"] == 2 and section["rows"] == 60 and section["read"] == 62
    # the run's domain-shift section (as tailor shift measures two files): "island" only in the target
    shift = adapt["shift"]
    assert shift["target"]["rows"] == 60 and shift["vocabulary"]["target_oov_rate"] > 0
    assert "island" in [row["word"] for row in shift["distinguishing_words"]["target"]]
    assert 0.0 <= shift["embeddings"]["proxy_a_distance"] <= 2.0
    assert "### Domain shift" in (out / "report.md").read_text()
    assert "Domain shift</h3>" in (out / "report.html").read_text()


def test_missing_target_file_is_one_line(target_recipe: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, _ = target_recipe
    code, _, stderr = run_cli(["run", str(recipe), "--set", f"output_dir={tmp_path / 'o'}",
                               "--set", f"adapt.target_unlabeled={tmp_path / 'nope.txt'}"])
    assert_one_line_error(code, stderr, "nope.txt", "adapt.target_unlabeled")


def test_target_with_no_usable_rows_is_one_line(target_recipe: tuple[Path, Path], tmp_path: Path) -> None:
    recipe, target = target_recipe
    train = pd.read_csv(recipe.parent / "reviews.csv")
    target.write_text("\n".join(train["text"].head(20)) + "\n\n")
    code, _, stderr = run_cli(["run", str(recipe), "--set", f"output_dir={tmp_path / 'o'}",
                               "--set", f"adapt.target_unlabeled={target}"])
    assert_one_line_error(code, stderr, "no target text left", "adapt.target_unlabeled")


@pytest.mark.parametrize("key", ["adversarial", "instance_weighting"])
def test_target_methods_need_a_target_and_a_task_that_can(key: str, tiny_recipe: Path) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", f"adapt.{key}=true"])
    assert_one_line_error(code, stderr, f"adapt.{key}", "adapt.target_unlabeled")
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "task=token-classification",
                               "--set", f"adapt.{key}=true", "--set", "adapt.target_unlabeled=t.txt"])
    assert_one_line_error(code, stderr, f"adapt.{key}", "token-classification")
