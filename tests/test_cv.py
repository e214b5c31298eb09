"""k-fold cross-validation: folds are stratified, disjoint and cover the training rows; metrics have mean ± std."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorlm.data.pipeline import prepare
from tailorlm.recipe import load_recipe
from tailorlm.tasks.classification.data import ClassificationRows
from tailorlm.tune.cv import assign_folds
from tests.conftest import sentiment_rows, write_recipe
from tests.helpers import run_cli


def cv_recipe(folder: Path, model_dir: Path, rows: int = 100, extra: str = "") -> Path:
    data = folder / "reviews.csv"
    frame = pd.DataFrame(sentiment_rows(rows))
    frame.loc[frame.index % 5 == 0, "label"] = "neutral"  # three labels of unequal size
    frame.to_csv(data, index=False)
    return write_recipe(folder / "cv.yaml", f"""
task: classification
output_dir: {folder / "cv"}
model: {{name: {model_dir}}}
data:
  train: {data}
  split: {{validation: 0.1, test: 0.2}}
training: {{epochs: 1, batch_size: 16, learning_rate: 1.0e-3, early_stopping_patience: null}}
baseline: {{zero_shot: false}}
{extra}
""")


def test_five_fold_run_reports_mean_std_and_stratified_disjoint_folds(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = cv_recipe(tmp_path, tiny_model_dir)
    code, _, stderr = run_cli(["run", str(recipe), "--set", "validation.kfold=5"])
    assert code == 0, stderr
    out = tmp_path / "cv"
    metrics = json.loads((out / "metrics.json").read_text())
    cv = metrics["cv"]
    assert cv["k"] == 5 and len(cv["folds"]) == 5
    for split in ("validation", "test"):
        mean, std = cv[split]["mean"], cv[split]["std"]
        values = [fold[split]["f1_macro"] for fold in cv["folds"]]
        assert mean["f1_macro"] == pytest.approx(np.mean(values), abs=1e-6)
        assert std["f1_macro"] == pytest.approx(np.std(values, ddof=1), abs=1e-6)
    assert metrics["tuned"]["f1_macro"] == cv["test"]["mean"]["f1_macro"]
    assert "linear_probe" in metrics["baseline"]  # measured once, in fold 1
    for k in range(1, 6):
        fold_dir = out / "folds" / f"fold-{k}"
        assert json.loads((fold_dir / "status.json").read_text())["status"] == "finished"
        assert (fold_dir / "model").is_dir()

    folds = json.loads((out / "folds.json").read_text())
    prepared = prepare(load_recipe(recipe).data, ClassificationRows(), None)
    train_rows = {int(r) for r in pd.concat([prepared.train, prepared.validation])["row"]}
    held = [fold["validation_ids"] for fold in folds["folds"]]
    assert sorted(i for ids in held for i in ids) == sorted(train_rows)  # disjoint and covering
    assert set(folds["pool"]["ids"]) == train_rows
    total = folds["pool"]["label_counts"]
    for fold in folds["folds"]:
        share = len(fold["validation_ids"]) / len(train_rows)
        for label, n in total.items():
            assert abs(fold["validation_label_counts"].get(label, 0) - n * share) <= 1, (label, fold)
    html = (out / "report.html").read_text()
    assert 'id="cross-validation"' in html and "fold 5" in html
    assert "Cross-validation" in (out / "report.md").read_text()


def test_assign_folds_stratified_and_disjoint() -> None:
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 17
    pool = pd.DataFrame({"label": labels, "row": range(len(labels)), "source": "x"})
    folds = assign_folds(pool, 5, stratified=True, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(labels)))
    for held in folds:
        counts = Counter(pool["label"].iloc[held])
        for label, n in Counter(labels).items():
            assert abs(counts[label] - n / 5) <= 1
    again = assign_folds(pool, 5, stratified=True, seed=3)
    assert all((a == b).all() for a, b in zip(folds, again, strict=True))  # the seed fixes the assignment


def test_too_small_class_for_stratified_folds_is_one_line(tmp_path: Path) -> None:
    from tailorlm.errors import DataError

    pool = pd.DataFrame({"label": ["a"] * 10 + ["b"] * 2, "row": range(12), "source": "x"})
    with pytest.raises(DataError, match="label 'b' has only 2 training rows"):
        assign_folds(pool, 5, stratified=True, seed=0)
    assert len(assign_folds(pool, 5, stratified=False, seed=0)) == 5


def test_kfold_of_another_task_is_refused(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "gen.yaml", "task: generation\nvalidation: {kfold: 3}\n"
                          f"output_dir: {tmp_path / 'out'}\nmodel: {{name: smollm2}}\n")
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 2
    assert "k-fold is supported for classification" in stderr and len(stderr.strip().splitlines()) == 1


def test_kfold_of_one_is_refused(tmp_path: Path) -> None:
    code, _, stderr = run_cli(["run", str(write_recipe(tmp_path / "r.yaml", "validation: {kfold: 1}\n"))])
    assert code == 2 and "validation.kfold" in stderr


def test_tune_with_kfold_scores_the_mean_over_folds(tmp_path: Path, tiny_model_dir: Path) -> None:
    search = """search:
  method: random
  trials: 1
  pruner: none
  metric: loss
  space:
    training.learning_rate: {type: loguniform, low: 1.0e-4, high: 1.0e-3}
validation: {kfold: 2}"""
    recipe = cv_recipe(tmp_path, tiny_model_dir, rows=50, extra=search)
    code, _, stderr = run_cli(["tune", str(recipe)])
    assert code == 0, stderr
    trial = tmp_path / "cv" / "trials" / "trial-000"
    summary = json.loads((tmp_path / "cv" / "tune.json").read_text())
    metrics = json.loads((trial / "metrics.json").read_text())
    assert summary["best"]["value"] == pytest.approx(metrics["cv"]["validation"]["mean"]["loss"])
    assert (trial / "folds" / "fold-2" / "metrics.json").exists()
    best = load_recipe(tmp_path / "cv" / "best_recipe.yaml")
    assert best.validation.kfold == 2
