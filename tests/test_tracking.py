"""Experiment tracking: `tailor run --track` logs the run directory to MLflow in a local SQLite store.

Every store here is a SQLite file under tmp_path, read back with MLflow's own client: what the UI would show.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.helpers import run_cli

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before MLflow's import starts its telemetry client
mlflow = pytest.importorskip("mlflow", reason="the tracking extra is not installed: pip install -e '.[tracking]'")


def _client(db: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{db}")


def _recipe(work: Path, model_dir: Path, rows: int = 100, **training: Any) -> Path:
    from tests.conftest import sentiment_rows

    data = work / "reviews.csv"
    pd.DataFrame(sentiment_rows(rows)).to_csv(data, index=False)
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification",
        "output_dir": str(work / "out"),
        "model": {"name": str(model_dir)},
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.25},
                 "label_descriptions": {"positive": "a happy & satisfied customer"}},
        "training": {"epochs": 1, "batch_size": 8, "learning_rate": 3e-3, "warmup": 0.0,
                     "early_stopping_patience": None, **training},
    }))
    return recipe


def _only_run(db: Path, experiment: str = "classification/reviews") -> Any:
    client = _client(db)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """One tracked tiny run (baselines on, 1 epoch), run from inside its folder so a stray ./mlruns would show."""
    work = tmp_path_factory.mktemp("tracked")
    recipe = _recipe(work, tiny_model_dir)
    here = Path.cwd()
    os.chdir(work)
    try:
        code, _, stderr = run_cli(["run", str(recipe), "--track"])
    finally:
        os.chdir(here)
    assert code == 0, stderr
    return work


def _leaf_values(raw: dict[str, Any]) -> dict[str, Any]:
    """The resolved recipe's leaf keys, walked by the schema as tracking does (mappings stay one value)."""
    from tailorlm.recipe import all_keys

    keys = all_keys()
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    values = {}
    for key in keys:
        if key in sections:
            continue
        value: Any = raw
        for part in key.split("."):
            value = value[part]
        values[key] = value
    return values


def test_tracked_run_writes_a_sqlite_store_beside_the_run(tracked: Path) -> None:
    assert (tracked / "mlflow.db").is_file()
    assert not (tracked / "mlruns").exists(), "MLflow's file store must never be used"
    run = _only_run(tracked / "mlflow.db")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "out"  # tracking.run_name defaults to the output_dir's name
    assert run.info.artifact_uri.startswith((tracked / "mlartifacts").as_uri())


def test_params_are_the_resolved_recipe(tracked: Path) -> None:
    params = _only_run(tracked / "mlflow.db").data.params
    resolved = yaml.safe_load((tracked / "out" / "recipe.resolved.yaml").read_text())
    expected = _leaf_values(resolved)
    assert set(params) == set(expected)
    for key, value in expected.items():
        shown = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        assert params[key] == shown, key
    assert params["training.learning_rate"] == "0.003"
    assert params["tracking.mlflow"] == "True"
    assert json.loads(params["data.label_descriptions"]) == {"positive": "a happy & satisfied customer"}


def test_metrics_are_metrics_json(tracked: Path) -> None:
    logged = _only_run(tracked / "mlflow.db").data.metrics
    metrics = json.loads((tracked / "out" / "metrics.json").read_text())
    for key in ("accuracy", "f1_macro", "ece"):
        assert logged[f"tuned.{key}"] == pytest.approx(metrics["tuned"][key])
    for baseline in ("zero_shot", "linear_probe"):
        assert logged[f"baseline.{baseline}.f1_macro"] == pytest.approx(metrics["baseline"][baseline]["f1_macro"])
    assert logged["tuned.per_class.positive.f1"] == pytest.approx(metrics["tuned"]["per_class"]["positive"]["f1"])
    assert logged["validation.loss"] == pytest.approx(metrics["validation"]["loss"])
    assert logged["train.global_step"] == metrics["train"]["global_step"]
    assert logged["timings_s.total"] == pytest.approx(metrics["timings_s"]["total"])
    assert not any(k.startswith(("data.", "significance.", "model.")) for k in logged)


def test_training_curves_have_one_point_per_logged_step(tracked: Path) -> None:
    client = _client(tracked / "mlflow.db")
    run_id = _only_run(tracked / "mlflow.db").info.run_id
    history = json.loads((tracked / "out" / "log_history.json").read_text())
    for key in ("loss", "eval_loss", "eval_f1_macro", "learning_rate"):
        expected = [(e["step"], e[key]) for e in history if key in e]
        assert expected, f"log_history.json has no {key}"
        points = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        assert [s for s, _ in points] == [s for s, _ in expected], key
        assert [v for _, v in points] == pytest.approx([v for _, v in expected]), key
    assert not client.get_metric_history(run_id, "eval_runtime")


def test_tags_identify_task_code_and_data(tracked: Path) -> None:
    tags = _only_run(tracked / "mlflow.db").data.tags
    info = json.loads((tracked / "out" / "run_info.json").read_text())
    assert tags["task"] == "classification"
    assert tags["status"] == "finished"
    assert tags["model.peft"] == "none"
    assert tags["tailorlm.version"] == info["versions"]["tailorlm"]
    assert tags["data.train.sha256"] == info["data_files"]["data.train"]["sha256"]
    assert tags["run_dir"] == str((tracked / "out").resolve())
    if info.get("git_revision"):
        assert tags["git.revision"] == tags["mlflow.source.git.commit"] == info["git_revision"]
    assert "error" not in tags


def test_artifacts_are_the_run_files_without_weights(tracked: Path) -> None:
    client = _client(tracked / "mlflow.db")
    run_id = _only_run(tracked / "mlflow.db").info.run_id
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "recipe.resolved.yaml", "data_report.json", "report.html", "report.md",
            "rejects.jsonl"} <= names
    assert "model" not in names  # tracking.log_model is off by default
    local = Path(client.download_artifacts(run_id, "metrics.json", str(tracked / "download")))
    assert json.loads(local.read_text()) == json.loads((tracked / "out" / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------ off, failed, bad URI


def _missing_data_recipe(tmp_path: Path, model_dir: Path) -> Path:
    """A recipe whose train file is missing: refused before the run starts (precheck.py)."""
    recipe = _recipe(tmp_path, model_dir)
    raw = yaml.safe_load(recipe.read_text())
    raw["data"]["train"] = str(tmp_path / "missing.csv")
    recipe.write_text(yaml.safe_dump(raw))
    return recipe


def _unlabelled_data_recipe(tmp_path: Path, model_dir: Path) -> Path:
    """A recipe whose run fails in its first stage (every row of the train file lacks a label): a cheap failed
    run that the checks before the run cannot see, since the file and its columns exist."""
    recipe = _recipe(tmp_path, model_dir)
    raw = yaml.safe_load(recipe.read_text())
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("text,label\n" + "".join(f"review number {i},\n" for i in range(12)))
    raw["data"]["train"] = str(unlabelled)
    recipe.write_text(yaml.safe_dump(raw))
    return recipe


def _shared_store(tracked: Path, experiment: str) -> list[str]:
    """The tracked run's database, another experiment: creating a new MLflow database takes seconds."""
    return ["--set", f"tracking.uri=sqlite:///{tracked / 'mlflow.db'}", "--set", f"tracking.experiment={experiment}"]


def test_a_failed_run_is_logged_with_its_error(tmp_path: Path, tiny_model_dir: Path, tracked: Path) -> None:
    recipe = _unlabelled_data_recipe(tmp_path, tiny_model_dir)
    code, _, stderr = run_cli(["run", str(recipe), "--track", *_shared_store(tracked, "failed")])
    assert code == 2, stderr
    run = _only_run(tracked / "mlflow.db", "failed")
    assert run.info.status == "FAILED"
    assert run.data.tags["status"] == "failed"
    assert "unlabelled.csv" in run.data.tags["error"] and "\n" not in run.data.tags["error"]
    assert run.data.params["data.train"] == str(tmp_path / "unlabelled.csv")


def test_tracking_off_by_default_creates_no_store(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = _missing_data_recipe(tmp_path, tiny_model_dir)
    for args in ([], ["--set", "tracking.mlflow=false"]):
        code, _, stderr = run_cli(["run", str(recipe), *args])
        assert code == 2, stderr
        assert not (tmp_path / "mlflow.db").exists()
        assert not list(tmp_path.rglob("mlflow.db")) and not (tmp_path / "mlartifacts").exists()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("uri", ["ftp://example.invalid/mlflow", "file:///tmp/mlruns", "sqlite://",
                                 "sqlite:///{tmp}/a-file/mlflow.db", "http://127.0.0.1:{port}"])
def test_a_bad_tracking_uri_stops_the_run_before_training(uri: str, tmp_path: Path, tiny_model_dir: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    recipe = _recipe(tmp_path, tiny_model_dir)
    uri = uri.format(tmp=tmp_path, port=_closed_port())  # loopback only: a closed port answers at once
    code, _, stderr = run_cli(["run", str(recipe), "--track", "--set", f"tracking.uri={uri}"])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "tracking.uri" in lines[0] and "set tracking.uri to" in lines[0]
    assert not (tmp_path / "out").exists(), "nothing may run before the tracking check"


def test_missing_mlflow_is_a_one_line_error(tmp_path: Path, tiny_model_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = _recipe(tmp_path, tiny_model_dir)
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    code, _, stderr = run_cli(["run", str(recipe), "--set", "tracking.mlflow=true"])
    assert code == 2
    assert stderr.strip() == ("error: tracking.mlflow is on but MLflow is not installed; "
                              "pip install 'tailorlm[tracking]'")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ --seeds


def test_seeds_are_children_of_one_parent_run(tmp_path: Path, tiny_model_dir: Path, tracked: Path) -> None:
    recipe = _recipe(tmp_path, tiny_model_dir, rows=80)
    code, _, stderr = run_cli(["run", str(recipe), "--seeds", "2", "--track", "--set", "baseline.zero_shot=false",
                               "--set", "baseline.linear_probe=false", *_shared_store(tracked, "seeds")])
    assert code == 0, stderr
    client = _client(tracked / "mlflow.db")
    exp = client.get_experiment_by_name("seeds")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {"out", "seed-42", "seed-43"}
    parent = runs["out"]
    assert parent.data.tags["kind"] == "seeds" and parent.info.status == "FINISHED"
    for name in ("seed-42", "seed-43"):
        child = runs[name]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        seed_metrics = json.loads((tmp_path / "out" / name / "metrics.json").read_text())
        assert child.data.metrics["tuned.f1_macro"] == pytest.approx(seed_metrics["tuned"]["f1_macro"])
        assert child.data.params["training.seed"] == name.removeprefix("seed-")
    top = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert parent.data.metrics["tuned.f1_macro"] == pytest.approx(top["tuned"]["f1_macro"])
    assert parent.data.metrics["tuned_std.f1_macro"] == pytest.approx(top["tuned_std"]["f1_macro"])
    assert "metrics.json" in {a.path for a in client.list_artifacts(parent.info.run_id)}


# ------------------------------------------------------------------------------------------ the mapping alone


def test_keys_and_long_values_fit_mlflow_limits() -> None:
    from tailorlm.recipe import Recipe
    from tailorlm.track.flatten import clean_key, curve_points, param_value, recipe_params, run_metrics

    assert clean_key("tuned.per_class.billing & payments/extra.f1") == "tuned.per_class.billing _ payments_extra.f1"
    assert clean_key("tuned.per_class...f1") == "tuned.per_class._._.f1"
    long = {"label": "x" * 2000}
    recipe = Recipe.model_validate({"data": {"label_descriptions": long}})
    value = recipe_params(recipe, limit=500)["data.label_descriptions"]
    assert len(value) == 500 and value.endswith("...")
    assert param_value(None) == "None" and param_value([1, 2]) == "[1, 2]"
    metrics = run_metrics({"tuned": {"f1": 0.5, "confusion_matrix": [[1]], "stopped": True, "nan": float("nan")},
                           "data": {"train": 10}})
    assert metrics == {"tuned.f1": 0.5}
    history = [{"loss": 1.0, "step": 1, "epoch": 0.5}, {"eval_loss": 0.9, "eval_runtime": 2.0, "step": 2},
               {"train_runtime": 3.0, "step": 2}]
    assert curve_points(history) == [("loss", 1.0, 1), ("eval_loss", 0.9, 2)]
