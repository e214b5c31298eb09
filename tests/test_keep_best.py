"""training.keep_best_of: the linear probe is saved when it beats the fine-tune on validation, and then predicts,
through the saved folder, exactly what the probe baseline predicted on the test split."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tailorlm.evaluate.metrics import softmax
from tailorlm.tasks.classification.probe import ProbeHead
from tests.conftest import write_recipe
from tests.helpers import run_cli


def _features(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 8)) + np.eye(classes, 8)[y] * 2.0
    return x, y


@pytest.mark.parametrize("classes", [2, 3])
def test_the_head_reproduces_sklearn_probabilities(classes: int) -> None:
    x, y = _features(90, classes)
    probe = LogisticRegression(max_iter=1000).fit(x, y)
    probs = softmax(ProbeHead.from_sklearn(probe, classes).logits(x))
    np.testing.assert_allclose(probs, probe.predict_proba(x), atol=1e-6)


def test_a_label_absent_from_training_gets_no_probability() -> None:
    x, y = _features(60, 2)
    probe = LogisticRegression(max_iter=1000).fit(x, np.where(y == 1, 2, 0))  # labels 0 and 2 of 3
    probs = softmax(ProbeHead.from_sklearn(probe, 3).logits(x))
    assert probs[:, 1].max() < 1e-6
    np.testing.assert_allclose(probs[:, [0, 2]], probe.predict_proba(x), atol=1e-6)


def _recipe(tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path, keep: str, extra: str = "") -> Path:
    return write_recipe(tmp_path / "recipe.yaml", f"""
task: classification
output_dir: {tmp_path / "run"}
model: {{name: {tiny_model_dir}}}
data:
  train: {sentiment_csv}
  split: {{validation: 0.2, test: 0.25}}
training:
  epochs: 1
  batch_size: 16
  learning_rate: 1.0e-9
  keep_best_of: {keep}
baseline: {{zero_shot: false, linear_probe: true}}
{extra}
""")


def test_a_losing_fine_tune_is_replaced_by_the_probe_that_predicts_like_the_baseline(
        tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = _recipe(tmp_path, tiny_model_dir, sentiment_csv, "[tuned, linear_probe]")
    code, out, err = run_cli(["run", str(recipe)])
    assert code == 0, err
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    kept = metrics["kept"]
    assert kept["model"] == "linear_probe", kept
    assert kept["validation"]["linear_probe"] > kept["validation"]["tuned"]
    assert kept["test"]["f1_macro"] == metrics["baseline"]["linear_probe"]["f1_macro"]
    assert "keep_best_of saved the linear probe" in metrics["verdict"]["sentence"]
    assert "keep_best_of saved the linear probe" in err + out
    assert json.loads((run / "model" / "tailor_model.json").read_text())["head"] == "linear_probe"

    rows = [json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()]
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in rows))
    code, _, err = run_cli(["predict", str(run), "--input", str(inputs), "--out", str(tmp_path / "p.jsonl")])
    assert code == 0, err
    predicted = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    for row, answer in zip(rows, predicted, strict=True):
        assert answer["label"] == row["baselines"]["linear_probe"]["predicted"]
        assert answer["confidence"] == pytest.approx(row["baselines"]["linear_probe"]["confidence"], abs=1e-4)

    # the model card says it holds the probe, and its transformers-only snippet predicts what tailor predict does
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "This folder holds the linear probe" in card
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    text = rows[0]["text"]
    snippet = snippet.replace('texts = ["your text here"]', f"texts = [{text!r}]")
    monkeypatch.chdir(run / "model")
    namespace: dict = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)  # the card's own code
    from_card = {namespace["LABELS"][i]: float(v) for i, v in enumerate(namespace["probabilities"][0])}
    assert max(from_card.values()) == pytest.approx(predicted[0]["confidence"], abs=1e-5)
    assert max(from_card, key=from_card.__getitem__) == predicted[0]["label"]


def test_the_default_keeps_the_fine_tune_and_runs_no_choice(
        tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path) -> None:
    recipe = _recipe(tmp_path, tiny_model_dir, sentiment_csv, "[tuned]")
    code, _, err = run_cli(["run", str(recipe)])
    assert code == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "kept" not in metrics
    assert "head" not in json.loads((tmp_path / "run" / "model" / "tailor_model.json").read_text())


@pytest.mark.parametrize(("task_extra", "message"), [
    ("baseline: {linear_probe: false}", "baseline.linear_probe is false"),
])
def test_keeping_a_probe_that_is_not_measured_is_refused(
        tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path, task_extra: str, message: str) -> None:
    recipe = _recipe(tmp_path, tiny_model_dir, sentiment_csv, "[tuned, linear_probe]")
    text = recipe.read_text().replace("baseline: {zero_shot: false, linear_probe: true}", task_extra)
    recipe.write_text(text)
    code, _, err = run_cli(["run", str(recipe)])
    assert code == 2 and message in err, err


def test_a_probe_is_kept_only_for_classification() -> None:
    from tailorlm.errors import RecipeError
    from tailorlm.recipe import recipe_from_dict

    with pytest.raises(RecipeError, match="classification, not task 'qa'"):
        recipe_from_dict({"task": "qa", "output_dir": "x", "data": {"train": "t.json"},
                          "training": {"keep_best_of": ["tuned", "linear_probe"]}}, "r.yaml")
