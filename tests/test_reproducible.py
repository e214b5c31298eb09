"""Reproducibility: the same recipe and seed on CPU give the same metrics.json; `--reproduce` reruns a run dir."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_resume import comparable


@pytest.fixture()
def small_recipe(tmp_path: Path, tiny_model_dir: Path) -> Path:
    data = tmp_path / "data" / "reviews.csv"
    data.parent.mkdir()
    pd.DataFrame(sentiment_rows(64)).to_csv(data, index=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "output_dir": str(tmp_path / "first"),
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.25}},
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 2e-3, "max_length": 16, "seed": 11},
        "baseline": {"zero_shot": False, "linear_probe": False},
    }))
    return recipe


def test_same_recipe_same_metrics_and_reproduce(small_recipe: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(["run", str(small_recipe)])
    assert code == 0, err
    first = tmp_path / "first"
    info = json.loads((first / "run_info.json").read_text())
    assert {"torch", "transformers", "tailorlm"} <= set(info["versions"])
    assert "git_revision" in info
    assert len(info["data_files"]["data.train"]["sha256"]) == 64

    code, _, err = run_cli(["run", "--reproduce", str(first)])
    assert code == 0, err
    again = Path(f"{first.resolve()}-reproduce")
    assert "warning" not in err
    original = json.loads((first / "metrics.json").read_text())
    # the reproduced run reads the concrete values the original's `auto` chose (recipe.resolved.yaml), so it has
    # nothing of its own to resolve: everything else must match
    original_values = {k: v["value"] for k, v in original.pop("auto", {}).items()}
    again_metrics = json.loads((again / "metrics.json").read_text())
    assert "auto" not in again_metrics
    assert comparable(again_metrics) == comparable(original)
    resolved = yaml.safe_load((again / "recipe.resolved.yaml").read_text())
    assert all(resolved["training"][k.removeprefix("training.")] == v for k, v in original_values.items())
    rerun = yaml.safe_load((again / "recipe.resolved.yaml").read_text())
    assert rerun["output_dir"] == str(again) and rerun["training"]["seed"] == 11

    data = Path(yaml.safe_load(small_recipe.read_text())["data"]["train"])
    data.write_text(data.read_text() + "\"the app was quick and smooth indeed\",positive\n")
    from tailorlm.provenance import check_reproducible, reproduce_args

    _, overrides = reproduce_args(first, [])
    warnings = check_reproducible(first, overrides)
    assert len(warnings) == 1 and "data.train" in warnings[0] and "differs" in warnings[0]


def test_reproduce_refuses_the_original_folder_and_a_non_run(tmp_path: Path) -> None:
    code, _, err = run_cli(["run", "--reproduce", str(tmp_path)])
    assert code == 2 and "no recipe.resolved.yaml" in err
    (tmp_path / "recipe.resolved.yaml").write_text("output_dir: x\n")
    code, _, err = run_cli(["run", "--reproduce", str(tmp_path), "--set", f"output_dir={tmp_path}"])
    assert code == 2 and "new folder" in err
    code, _, err = run_cli(["run"])
    assert code == 2 and "needs a recipe file" in err
