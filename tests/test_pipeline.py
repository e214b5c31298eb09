"""`tailor run` end to end on a tiny random encoder: the run directory, LoRA, eval, predict and export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import run_cli


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from tests.conftest import sentiment_rows

    work = tmp_path_factory.mktemp("run")
    data = work / "reviews.csv"
    pd.DataFrame(sentiment_rows(240)).to_csv(data, index=False)
    recipe = work / "recipe.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "task": "classification",
                "output_dir": str(work / "out"),
                "model": {"name": str(tiny_model_dir)},
                "data": {"train": str(data), "split": {"validation": 0.15, "test": 0.25}},
                "training": {"epochs": 4, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0},
            }
        )
    )
    code, stdout, stderr = run_cli(["run", str(recipe), "--set", "training.seed=7"])
    assert code == 0, stderr
    assert "before vs after fine-tuning" in stdout
    return work / "out"


def test_run_directory_holds_everything_to_reproduce(finished_run: Path) -> None:
    for name in ["recipe.resolved.yaml", "run_info.json", "data_report.json", "rejects.jsonl", "metrics.json",
                 "log_history.json", "report.html", "report.md", "status.json"]:
        assert (finished_run / name).is_file(), name
    model = finished_run / "model"
    assert (model / "model.safetensors").is_file()
    assert (model / "tokenizer.json").is_file() or (model / "vocab.txt").is_file()
    assert not list(model.glob("*.bin")), "weights must be safetensors"
    config = json.loads((model / "config.json").read_text())
    assert set(config["id2label"].values()) == {"negative", "positive"}
    assert json.loads((finished_run / "status.json").read_text())["status"] == "finished"
    resolved = yaml.safe_load((finished_run / "recipe.resolved.yaml").read_text())
    assert resolved["training"]["seed"] == 7  # the --set override is recorded
    assert not (finished_run / "checkpoints").exists()


def test_metrics_schema_and_learning(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["task"] == "classification"
    assert set(metrics["baseline"]) == {"zero_shot", "linear_probe"}
    for part in ("zero_shot", "linear_probe"):
        assert 0.0 <= metrics["baseline"][part]["f1_macro"] <= 1.0
    tuned = metrics["tuned"]
    for key in ("accuracy", "f1_macro", "precision_macro", "recall_macro", "f1_micro", "f1_weighted", "ece"):
        assert 0.0 <= tuned[key] <= 1.0, key
    assert set(tuned["per_class"]) == {"negative", "positive"}
    assert sum(map(sum, tuned["confusion_matrix"])) == metrics["data"]["test"]
    train = metrics["train"]
    assert train["trainable_params"] == train["total_params"] > 0
    assert train["runtime_s"] > 0 and train["samples_per_s"] > 0
    # the labels follow the adjectives: even a tiny random model must learn them
    assert tuned["accuracy"] >= 0.8


def test_eval_and_predict_on_the_saved_model(finished_run: Path, tmp_path: Path) -> None:
    from tests.conftest import sentiment_rows

    file = tmp_path / "more.jsonl"
    pd.DataFrame(sentiment_rows(30, seed=5)).to_json(file, orient="records", lines=True)
    out = tmp_path / "eval.json"
    code, stdout, stderr = run_cli(["eval", str(finished_run), "--data", str(file), "--output", str(out)])
    assert code == 0, stderr
    assert json.loads(out.read_text())["n"] == 30

    code, stdout, stderr = run_cli(["predict", str(finished_run / "model"), "--text", "the bill was awful and slow"])
    assert code == 0, stderr
    row = json.loads(stdout)
    assert row["label"] in {"negative", "positive"}
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    texts = tmp_path / "texts.txt"
    texts.write_text("the app was lovely and quick\n\nthe call was rude and late\n")
    preds = tmp_path / "preds.jsonl"
    code, _, stderr = run_cli(["predict", str(finished_run), "--input", str(texts), "--output", str(preds)])
    assert code == 0, stderr
    lines = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r.get("row") for r in lines if "label" in r] == [1, 3]
    assert any(r.get("error") == "empty_text" for r in lines), "the empty line is reported, not dropped silently"


def test_temperature_is_fitted_on_validation_saved_and_applied_when_predicting(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    calibration = metrics["calibration"]
    meta = json.loads((finished_run / "model" / "tailor_model.json").read_text())
    assert calibration["validation_rows"] == metrics["data"]["validation"] >= 20
    assert meta["temperature"] == calibration["temperature"] > 0
    assert calibration["validation_nll_after"] <= calibration["validation_nll_before"]
    assert calibration["temperature"] != 1.0 and "ece_uncalibrated" in metrics["tuned"]
    assert "Confidence calibration" in (finished_run / "report.md").read_text()
    # a reloaded model applies the same temperature: tailor predict gives the confidence predictions.jsonl holds
    row = json.loads((finished_run / "predictions.jsonl").read_text().splitlines()[0])
    code, stdout, stderr = run_cli(["predict", str(finished_run), "--text", row["text"]])
    assert code == 0, stderr
    assert json.loads(stdout)["confidence"] == pytest.approx(row["confidence"], abs=1e-4)


def test_calibration_temperature_recovers_a_known_scale() -> None:
    """Logits five times too sharp (log of calibrated probabilities, times 5): the fitted T is close to 5."""
    import numpy as np

    from tailorlm.evaluate.calibration import fit_temperature, negative_log_likelihood

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([0.7, 0.7, 0.7], size=4000)
    y = np.array([rng.choice(3, p=p) for p in probs])
    logits = 5.0 * np.log(probs)
    fitted = fit_temperature(logits, y)
    assert fitted["temperature"] == pytest.approx(5.0, rel=0.1)
    assert fitted["validation_nll_after"] < fitted["validation_nll_before"]
    assert negative_log_likelihood(np.log(probs), y) == pytest.approx(fitted["validation_nll_after"], rel=0.02)

    # a split the model gets entirely right: no pull to T = 0 (certainty), confidence stays below 1 - 1/(n + 2)
    separable = np.array([[2.0, 0.0], [0.0, 1.5], [1.8, 0.2], [0.4, 2.4]] * 5)  # right on all 20, unsure of it
    labels = np.array([0, 1, 0, 1] * 5)
    sharp = fit_temperature(separable, labels)
    assert 0.2 < sharp["temperature"] < 1.0  # sharper than the raw logits, far from the bound 1/50
    scaled = np.exp(separable / sharp["temperature"])
    assert 0.9 < float((scaled.max(axis=1) / scaled.sum(axis=1)).mean()) < 0.99  # ~ 1 - 1/(20 + 2), not 1


def test_lora_run_saves_adapter_and_exports_merged(tmp_path: Path, tiny_recipe: Path) -> None:
    out = tmp_path / "lora"
    code, _, stderr = run_cli([
        "run", str(tiny_recipe), "--set", f"output_dir={out}", "--set", "model.peft.method=lora",
        "--set", "model.peft.r=4", "--set", "training.epochs=1", "--set", "baseline.linear_probe=false",
    ])
    assert code == 0, stderr
    assert (out / "model" / "adapter_config.json").is_file()
    assert (out / "model" / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["trainable_params"] < metrics["train"]["total_params"]
    assert "linear_probe" not in metrics["baseline"]
    merged = tmp_path / "merged"
    code, _, stderr = run_cli(["export", str(out), "--out", str(merged)])
    assert code == 0, stderr
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    code, stdout, stderr = run_cli(["predict", str(merged), "--text", "great and lovely"])
    assert code == 0, stderr
    adapter_pred = json.loads(run_cli(["predict", str(out), "--text", "great and lovely"])[1])
    assert json.loads(stdout)["probabilities"] == pytest.approx(adapter_pred["probabilities"], abs=1e-4)


def test_prepare_alone_writes_data_report(tiny_recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    code, _, stderr = run_cli(["prepare", str(tiny_recipe), "--set", f"output_dir={out}"])
    assert code == 0, stderr
    report = json.loads((out / "data_report.json").read_text())
    assert report["length_unit"] == "tokens"
    assert not (out / "model").exists()
