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


def _numbers(metrics: dict) -> dict:
    """metrics.json without timings and without the paths (the reproduction names the same files absolutely)."""
    def strip(value: object) -> object:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("source", "name", "path", "file")}
        return [strip(v) for v in value] if isinstance(value, list) else value
    return strip(comparable(metrics))  # type: ignore[return-value]


def test_reproduce_from_another_folder_uses_the_recorded_paths_and_cleans_up(
        tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recipe with relative paths, run in its project folder, then `--reproduce` from elsewhere: the same
    metrics, no false "data changed" warning; a failing reproduction leaves no folder; a finished folder is
    never overwritten without --overwrite."""
    import os

    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / "data").mkdir(parents=True)
    elsewhere.mkdir()
    pd.DataFrame(sentiment_rows(64)).to_csv(project / "data" / "reviews.csv", index=False)
    (project / "recipe.yaml").write_text(yaml.safe_dump({
        "output_dir": "runs/first",
        "model": {"name": os.path.relpath(tiny_model_dir, project)},
        "data": {"train": "data/reviews.csv", "split": {"validation": 0.2, "test": 0.25}},
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 2e-3, "max_length": 16, "seed": 11},
        "baseline": {"zero_shot": False, "linear_probe": False},
    }))
    monkeypatch.chdir(project)
    code, _, err = run_cli(["run", "recipe.yaml"])
    assert code == 0, err
    first = project / "runs" / "first"

    monkeypatch.chdir(elsewhere)
    code, _, err = run_cli(["run", "--reproduce", str(first)])
    assert code == 0, err
    assert "warning" not in err and "differs" not in err
    again = Path(f"{first}-reproduce")
    original = json.loads((first / "metrics.json").read_text())
    original.pop("auto", None)
    assert _numbers(json.loads((again / "metrics.json").read_text())) == _numbers(original)
    assert list(elsewhere.iterdir()) == []  # nothing written relative to the folder it was started from

    # a second reproduction into the finished folder is refused, and that folder (not this run's) stays
    code, _, err = run_cli(["run", "--reproduce", str(first)])
    assert code == 2 and "finished run" in err and "--overwrite" in err, err
    assert (again / "metrics.json").is_file()

    # a reproduction that fails after creating its folder removes it
    failed = tmp_path / "failed-reproduce"
    code, _, err = run_cli(["run", "--reproduce", str(first), "--set", f"output_dir={failed}",
                            "--set", "data.text_column=no_such_column"])
    assert code == 2 and "no_such_column" in err, err
    assert not failed.exists()


def test_a_finished_output_dir_is_refused_without_overwrite(small_recipe: Path, tmp_path: Path) -> None:
    code, _, err = run_cli(["run", str(small_recipe)])
    assert code == 0, err
    before = (tmp_path / "first" / "metrics.json").read_bytes()
    code, _, err = run_cli(["run", str(small_recipe), "--set", "training.learning_rate=1e-3"])
    assert code == 2 and "finished run" in err and "--overwrite" in err and "output_dir" in err, err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "first" / "metrics.json").read_bytes() == before
    code, _, err = run_cli(["run", str(small_recipe), "--set", "training.learning_rate=1e-3", "--overwrite"])
    assert code == 0, err
    code, _, err = run_cli(["run", str(small_recipe), "--set", "overwrite=true"])
    assert code == 0, err
