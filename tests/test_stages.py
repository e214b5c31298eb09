"""The run as a stage list (issue 11): a new stage plugs in without touching the runner, a stage may write only the
sections it declares, the plan says what is skipped and why, and `tailor run --dry-run` prints it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.helpers import run_cli


def test_a_registered_stage_runs_and_its_section_reaches_metrics_json(tiny_recipe: Path) -> None:
    from tailorlm.recipe import load_recipe
    from tailorlm.run import STAGES, run
    from tailorlm.stages.context import RunContext, Stage

    def count_rows(ctx: RunContext) -> dict:
        return {"row_count": {"train": len(ctx.need("data").train), "encoded": len(ctx.need("encoded").train)}}

    at = [s.name for s in STAGES].index("write")
    stages = [*STAGES[:at], Stage("count_rows", count_rows, writes=("row_count",)), *STAGES[at:]]
    recipe = load_recipe(tiny_recipe, ["training.epochs=1", "baseline.linear_probe=false"])
    metrics = run(recipe, stages=stages)
    saved = json.loads((Path(recipe.output_dir) / "metrics.json").read_text())
    assert saved["row_count"] == metrics["row_count"] == {"train": saved["data"]["train"],
                                                          "encoded": saved["data"]["train"]}
    assert {"stage": "count_rows", "runs": True, "when": "always"} in saved["stages"]
    assert "count_rows" in saved["timings_s"]


def test_a_stage_returning_an_undeclared_section_is_refused() -> None:
    from tailorlm.stages.context import Stage
    from tailorlm.stages.runner import merge_sections

    metrics = {"adapt": {"pretrain": {"epochs": 1}}}
    merge_sections(metrics, {"adapt": {"self_training": {"kept": "teacher"}}}, Stage("s", print, writes=("adapt",)))
    assert metrics == {"adapt": {"pretrain": {"epochs": 1}, "self_training": {"kept": "teacher"}}}
    with pytest.raises(RuntimeError, match="stage 'sneaky' returned sections it does not declare: tuned"):
        merge_sections(metrics, {"tuned": {}}, Stage("sneaky", print))


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "planned"
    code, stdout, stderr = run_cli(["run", str(tiny_recipe), "--dry-run", "--set", f"output_dir={out}",
                                    "--set", "adapt.pretrain=true", "--set", "training.seeds=2"])
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert "2 seeds" in lines[0]
    assert "  run  adapt  (runs when adapt.pretrain is on)" in lines
    assert "  skip self_train  (runs when adapt.self_train is on)" in lines
    assert "  run  train" in lines
    assert not out.exists()


def test_the_plan_follows_the_recipe(tiny_recipe: Path) -> None:
    from tailorlm.recipe import load_recipe
    from tailorlm.run import dry_run

    plain = {e["stage"]: e["runs"] for e in dry_run(load_recipe(tiny_recipe))}
    assert plain["train"] and not plain["adapt"] and not plain["lr_find"] and not plain["weigh"]
    found = {e["stage"]: e["runs"] for e in dry_run(load_recipe(tiny_recipe, ["training.learning_rate=find"]))}
    assert found["lr_find"]
    assert yaml.safe_load(tiny_recipe.read_text())["task"] == "classification"
