"""`tailor adapt-study` (adapt/study.py): every method on the same target test and seeds, a row per method against
source-only, and a stopped study continues without rerunning finished cells."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture()
def study_recipe(tmp_path: Path, tiny_model_dir: Path) -> Path:
    rows = sentiment_rows(400, seed=3)
    source, target_test, target_labeled, target_text = rows[:120], rows[120:180], rows[180:280], rows[280:400]
    files = {}
    for name, part in (("source", source), ("target_test", target_test), ("target_labeled", target_labeled)):
        files[name] = tmp_path / f"{name}.csv"
        pd.DataFrame(part).to_csv(files[name], index=False)
    files["target_text"] = tmp_path / "target.txt"
    files["target_text"].write_text("\n".join(r["text"].upper() for r in target_text) + "\n")
    recipe = tmp_path / "study.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification", "output_dir": str(tmp_path / "study"), "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(files["source"]), "split": {"validation": 0.2, "test": 0.0}},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0,
                     "early_stopping_patience": None},
        "baseline": {"linear_probe": False, "zero_shot": False},
        "adapt": {"target_unlabeled": str(files["target_text"]), "target_test": str(files["target_test"]),
                  "target_labeled": str(files["target_labeled"]), "threshold": 0.5, "max_pseudo": 20},
    }))
    return recipe


def test_study_table_and_resume(study_recipe: Path) -> None:
    args = ["adapt-study", str(study_recipe), "--seeds", "2", "--methods", "source_only,self_train,augment,ceiling"]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    out = study_recipe.parent / "study"
    study = json.loads((out / "study.json").read_text())
    rows = {r["method"]: r for r in study["methods"]}
    assert list(rows) == ["source_only", "self_train", "augment", "ceiling"] and study["seeds"] == [42, 43]
    for row in rows.values():
        assert len(row["per_seed"]) == 2 and row["mean"] == pytest.approx(sum(row["per_seed"]) / 2)
    assert "vs_source_only" in rows["self_train"] and "p_value" in rows["self_train"]["vs_source_only"]
    assert "gap_closed" in rows["self_train"] and "vs_source_only" not in rows["source_only"]
    cell = json.loads((out / "cells/source_only/seed-42/metrics.json").read_text())
    assert cell["data"]["test"] == 60  # scored on the target test, not a split of the source
    assert (out / "study.md").read_text().startswith("# Adaptation study") and "study.csv" in {
        p.name for p in out.iterdir()}
    assert "| source_only |" in stdout
    page = (out / "study.html").read_text()
    assert 'id="chart"' in page and "data:image/svg+xml;base64," in page and "<td>self_train</td>" in page
    mtime = (out / "cells/ceiling/seed-43/metrics.json").stat().st_mtime
    code, _, stderr = run_cli(args)
    assert code == 0 and stderr.count("finished earlier with the same recipe, kept") == 8
    assert (out / "cells/ceiling/seed-43/metrics.json").stat().st_mtime == mtime
    # another setting into the same folder: refused, naming the key, and no finished cell is touched
    code, _, stderr = run_cli([*args, "--set", "training.learning_rate=1e-3"])
    assert_one_line_error(code, stderr, "training.learning_rate")
    assert "cells/source_only/seed-42" in stderr and "output_dir" in stderr
    assert (out / "cells/ceiling/seed-43/metrics.json").stat().st_mtime == mtime


def test_study_needs_its_target_files(study_recipe: Path) -> None:
    code, _, stderr = run_cli(["adapt-study", str(study_recipe), "--set", "adapt.target_test=null"])
    assert_one_line_error(code, stderr, "adapt.target_test")
    code, _, stderr = run_cli(["adapt-study", str(study_recipe), "--methods", "source_only,magic"])
    assert_one_line_error(code, stderr, "--methods", "magic")


def test_the_answer_names_the_methods_that_helped_and_those_that_lost() -> None:
    from tailorlm.adapt.study import answer

    def row(method: str, difference: float, spread_beaten: bool, p_value: float) -> dict:
        return {"method": method, "vs_source_only": {"difference": difference, "beyond_seed_spread": spread_beaten,
                                                     "p_value": p_value}}

    rows = [{"method": "source_only"}, row("dapt", -0.05, False, 0.0), row("self_train", -0.01, False, 0.25),
            row("dann", 0.03, True, 0.01), row("weighting", 0.01, False, 0.04), row("ceiling", 0.14, True, 0.0)]
    said = answer(rows)
    assert said.startswith("beat source-only by more than the seed spread: dann;")
    assert said.endswith("worse than source-only on the target test (paired test at 5%): dapt")  # not self_train
    assert answer(rows[:3]) == ("no adaptation method beat source-only by more than the seed spread; worse than "
                                "source-only on the target test (paired test at 5%): dapt")
    assert answer([{"method": "source_only"}]) == "no adaptation method was compared with source-only"


def test_target_validation_is_every_methods_validation_split(study_recipe: Path) -> None:
    """Checkpoints chosen on target rows, not on source rows carved from the training file, for every method."""
    from tailorlm.adapt.study import METHODS, cell_recipe
    from tailorlm.recipe import load_recipe

    target_validation = str(study_recipe.parent / "target_labeled.csv")
    recipe = load_recipe(study_recipe, [f"adapt.target_validation={target_validation}"])
    for method in METHODS:
        assert cell_recipe(recipe, method, 42).data.validation == target_validation, method
    plain = load_recipe(study_recipe)
    assert cell_recipe(plain, "source_only", 42).data.validation is None
    assert cell_recipe(plain, "ceiling", 42).data.validation is None
