"""Regression (issue 15): a float target per text or text pair; metrics, baselines, `tailor run`, eval, predict."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorlm.data.pipeline import prepare
from tailorlm.recipe import DataConfig
from tailorlm.tasks.regression.data import RegressionRows
from tailorlm.tasks.regression.metrics import regression_metrics
from tests.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GOOD = ["great", "lovely", "quick", "helpful", "friendly", "excellent"]
BAD = ["awful", "slow", "rude", "broken", "late", "noisy"]


def scored_rows(n: int, seed: int = 0, pairs: bool = False) -> list[dict[str, object]]:
    """Texts whose score is the number of good words minus bad ones: learnable in a few steps."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        words = rng.sample(GOOD, rng.randint(0, 3)) + rng.sample(BAD, rng.randint(0, 3))
        rng.shuffle(words)
        text = "the service was " + " and ".join(words or ["fine"]) + f" at shop {rng.randint(1, 999)}"
        if text in seen:
            continue
        seen.add(text)
        score = float(sum(w in GOOD for w in words) - sum(w in BAD for w in words))
        row: dict[str, object] = {"text": text, "score": score}
        if pairs:
            row["sentence2"] = "shop review " + str(rng.randint(1, 50))
        rows.append(row)
    return rows


def test_metrics_match_their_definitions() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([1.5, 2.0, 2.5, 5.0])
    m = regression_metrics(y, p)
    assert m["rmse"] == pytest.approx(np.sqrt((0.25 + 0 + 0.25 + 1) / 4))
    assert m["mae"] == pytest.approx(0.5)
    assert m["spearman"] == pytest.approx(1.0) and 0.9 < m["pearson"] < 1.0
    assert regression_metrics(y, np.ones(4))["pearson"] == 0.0  # a constant prediction ranks nothing


def test_rows_reject_non_numbers_and_keep_pairs(tmp_path: Path) -> None:
    rows = scored_rows(40, pairs=True)
    rows[3]["score"] = "high"
    rows[5]["score"] = "nan"
    path = tmp_path / "sts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    cfg = DataConfig(train=str(path), label_column="score", text_pair_column="sentence2")
    data = prepare(cfg, RegressionRows("sentence2"))
    assert sorted(r["row"] for r in data.rejects if r["reason"] == "bad_target") == [4, 6]  # 1-based data rows
    assert data.train["target"].dtype == float and data.train["pair"].str.startswith("shop review").all()
    assert data.report["target"]["train"]["n"] == len(data.train)


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("regression")
    pd.DataFrame(scored_rows(240)).to_csv(tmp / "train.csv", index=False)
    pd.DataFrame(scored_rows(60, seed=1)).to_csv(tmp / "test.csv", index=False)
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"""
task: regression
output_dir: {tmp / "run"}
model: {{name: {tiny_model_dir}}}
data: {{train: {tmp / "train.csv"}, test: {tmp / "test.csv"}, label_column: score, split: {{validation: 0.15}}}}
training: {{epochs: 6, batch_size: 16, learning_rate: 3.0e-3, early_stopping_patience: null, warmup: 0.0}}
""", encoding="utf-8")
    code, _, stderr = run_cli(["run", str(recipe)])
    assert code == 0, stderr
    return tmp


def test_tailor_run_learns_and_reports_against_both_baselines(regression_run: Path) -> None:
    metrics = json.loads((regression_run / "run" / "metrics.json").read_text())
    assert metrics["task"] == "regression"
    assert set(metrics["baseline"]) == {"mean", "ridge_probe"}
    assert metrics["baseline"]["mean"]["floor"] is True and metrics["baseline"]["ridge_probe"]["floor"] is False
    tuned, mean = metrics["tuned"], metrics["baseline"]["mean"]
    assert tuned["rmse"] < 0.8 * mean["rmse"], (tuned, mean)  # it learned: the mean predictor is the floor
    assert tuned["spearman"] > 0.5
    assert metrics["significance"]["metric"] == "squared_error"
    assert metrics["verdict"]["metric"] == "rmse"
    assert "rmse" in metrics["validation"]


def test_eval_and_predict_reload_the_saved_model(regression_run: Path) -> None:
    run = regression_run / "run"
    out = regression_run / "eval.json"
    code, _, stderr = run_cli(["eval", str(run), "--data", str(regression_run / "test.csv"), "--label-column",
                               "score", "--out", str(out), "--clean"])  # --clean: as the run's test split was
    assert code == 0, stderr
    tuned = json.loads((run / "metrics.json").read_text())["tuned"]
    assert json.loads(out.read_text())["rmse"] == pytest.approx(tuned["rmse"], abs=1e-5)
    code, stdout, stderr = run_cli(["predict", str(run), "--text", "the service was great and lovely"])
    assert code == 0, stderr
    assert isinstance(json.loads(stdout)["score"], float)


def test_huber_and_mse_losses_per_example() -> None:
    import torch

    from tailorlm.train.objective import Objective, per_example_loss

    outputs = {"logits": torch.tensor([[0.0], [3.0]])}
    targets = {"labels": torch.tensor([0.5, 0.0])}
    assert per_example_loss(outputs, targets, "mse").tolist() == pytest.approx([0.25, 9.0])
    assert per_example_loss(outputs, targets, "huber", huber_delta=1.0).tolist() == pytest.approx([0.125, 2.5])
    assert Objective("huber").takes_over({}) and not Objective("mse").takes_over({})  # MSE is the head's own loss


def test_the_demo_is_deterministic_and_holds_out_test_phrasings(tmp_path: Path) -> None:
    from tailorlm.demos.regression import SITUATIONS, generate_regression_dataset

    a = generate_regression_dataset(tmp_path / "a", seed=3, n_rows=200)
    b = generate_regression_dataset(tmp_path / "b", seed=3, n_rows=200)
    frames = {name: pd.read_csv(path) for name, path in a.items()}
    assert all(frames[n].equals(pd.read_csv(b[n])) for n in frames)
    assert frames["train"]["score"].between(0, 5).all() and len(frames["train"]) == 140
    held_out = [p for _, test, _ in SITUATIONS for p in test]
    assert not frames["train"]["text"].str.contains("|".join(held_out)).any()
    assert frames["test"]["text"].str.contains("|".join(held_out)).any()
    assert not set(frames["train"]["text"]) & set(frames["test"]["text"])


def test_text_pairs_are_encoded_and_scored_as_pairs(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tailorlm.recipe import recipe_from_dict
    from tailorlm.tasks import get_task
    from tailorlm.tasks.base import EvalSettings

    path = tmp_path / "sts.csv"
    pd.DataFrame(scored_rows(60, pairs=True)).to_csv(path, index=False)
    recipe = recipe_from_dict({"task": "regression", "model": {"name": str(tiny_model_dir)},
                               "data": {"train": str(path), "label_column": "score", "text_pair_column": "sentence2"}})
    task, tokenizer = get_task("regression"), AutoTokenizer.from_pretrained(tiny_model_dir)
    data = task.prepare_data(recipe, None)
    encoded = task.encode(recipe, data, tokenizer)
    assert all(1 in row for row in encoded.train["token_type_ids"])  # the second segment is the pair
    from tailorlm.models.registry import resolve_model

    model = task.build_model(resolve_model(str(tiny_model_dir)), recipe, data)
    result = task.evaluate(model, tokenizer, data.test, task.model_meta(data), EvalSettings(max_length=64))
    assert result["metrics"]["n"] == len(data.test) and task.model_meta(data)["pair"] is True
    assert {"gold", "prediction", "scores"} <= set(result["predictions"][0])


def test_the_untrained_head_predicts_the_training_mean(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import recipe_from_dict
    from tailorlm.tasks import get_task

    path = tmp_path / "scores.csv"
    pd.DataFrame([r | {"score": float(r["score"]) + 10.0} for r in scored_rows(60)]).to_csv(path, index=False)
    recipe = recipe_from_dict({"task": "regression", "data": {"train": str(path), "label_column": "score"}})
    task = get_task("regression")
    data = task.prepare_data(recipe, None)
    model = task.build_model(resolve_model(str(tiny_model_dir)), recipe, data)
    assert float(model.classifier.bias.detach()) == pytest.approx(data.train["target"].mean(), abs=1e-5)


def _pair_recipe(tmp: Path, model_dir: Path, **regression: object) -> Path:
    pd.DataFrame(scored_rows(240, pairs=True)).to_csv(tmp / "train.csv", index=False)
    pd.DataFrame(scored_rows(60, seed=1, pairs=True)).to_csv(tmp / "test.csv", index=False)
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"""
task: regression
output_dir: {tmp / "run"}
model: {{name: {model_dir}}}
data: {{train: {tmp / "train.csv"}, test: {tmp / "test.csv"}, label_column: score, text_pair_column: sentence2,
        split: {{validation: 0.15}}}}
regression: {json.dumps(regression)}
training: {{epochs: 6, batch_size: 16, learning_rate: 3.0e-3, early_stopping_patience: null, warmup: 0.0}}
""", encoding="utf-8")
    return recipe


@pytest.fixture(scope="module")
def bi_encoder_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    tmp = tmp_path_factory.mktemp("bi-encoder")
    code, _, stderr = run_cli(["run", str(_pair_recipe(tmp, tiny_model_dir, pair_encoding="bi_encoder"))])
    assert code == 0, stderr
    return tmp


def test_a_bi_encoder_learns_against_the_cosine_baseline_and_reloads(bi_encoder_run: Path) -> None:
    run = bi_encoder_run / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["baseline"]) == {"mean", "ridge_probe", "cosine"}
    assert metrics["baseline"]["cosine"]["floor"] is False and "fitted on" in metrics["baseline"]["cosine"]["method"]
    assert metrics["tuned"]["rmse"] < 0.8 * metrics["baseline"]["mean"]["rmse"], metrics["tuned"]
    saved = json.loads((run / "model" / "tailor_model.json").read_text())
    assert saved["head"] == "cosine_similarity" and saved["pair"] is True
    assert (run / "model" / "cosine_head.safetensors").exists()
    out = bi_encoder_run / "eval.json"
    code, _, stderr = run_cli(["eval", str(run), "--data", str(bi_encoder_run / "test.csv"), "--label-column",
                               "score", "--out", str(out), "--clean"])
    assert code == 0, stderr
    assert json.loads(out.read_text())["rmse"] == pytest.approx(metrics["tuned"]["rmse"], abs=1e-5)
    inputs = bi_encoder_run / "inputs.jsonl"
    inputs.write_text(json.dumps({"text": "the service was great and lovely", "text_pair": "shop review 3"}) + "\n")
    predicted = bi_encoder_run / "predicted.jsonl"
    code, _, stderr = run_cli(["predict", str(run), "--input", str(inputs), "--out", str(predicted)])
    assert code == 0, stderr
    assert isinstance(json.loads(predicted.read_text().splitlines()[0])["score"], float)
    code, _, stderr = run_cli(["predict", str(run), "--text", "the service was great"])
    assert code == 2 and "text_pair" in stderr


def test_the_untrained_bi_encoder_is_the_cosine_baseline(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Its line is fitted to the pretrained cosines as the baseline's is: fine-tuning starts from that reference."""
    from transformers import AutoModel, AutoTokenizer

    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import load_recipe
    from tailorlm.tasks import get_task
    from tailorlm.tasks.base import EvalSettings
    from tailorlm.tasks.regression.task import cosine_baseline

    recipe = load_recipe(_pair_recipe(tmp_path, tiny_model_dir, pair_encoding="bi_encoder"))
    task, tokenizer = get_task("regression"), AutoTokenizer.from_pretrained(tiny_model_dir)
    data = task.prepare_data(recipe, None)
    encoded = task.encode(recipe, data, tokenizer)
    assert "pair_input_ids" in encoded.train.column_names and "token_type_ids" not in encoded.train.column_names
    batch = task.collator(tokenizer)([encoded.train[i] for i in range(4)])
    assert batch["input_ids"].shape[0] == batch["pair_input_ids"].shape[0] == 4
    model = task.build_model(resolve_model(str(tiny_model_dir)), recipe, data)
    assert model(**batch).loss is not None  # what the Trainer calls
    untrained = task.evaluate(model, tokenizer, data.test, task.model_meta(data), EvalSettings(encoded.max_length))
    reference = cosine_baseline(AutoModel.from_pretrained(tiny_model_dir), tokenizer, data, encoded.max_length, 32)
    assert untrained["metrics"]["rmse"] == pytest.approx(reference["rmse"], rel=1e-4)


def test_pair_encoding_auto_picks_the_bi_encoder_for_sentence_embedding_models(tmp_path: Path,
                                                                                tiny_model_dir: Path) -> None:
    import shutil

    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import load_recipe
    from tailorlm.tasks import get_task

    sbert = tmp_path / "sbert"
    shutil.copytree(tiny_model_dir, sbert)
    (sbert / "modules.json").write_text("[]")
    task = get_task("regression")

    def chosen(model_dir: Path, **overrides: object) -> str:
        recipe = load_recipe(_pair_recipe(tmp_path, model_dir))
        for key, value in overrides.items():
            setattr(recipe.model.peft, key, value)
        choices = task.resolve_auto(recipe, task.prepare_data(recipe, None), resolve_model(str(model_dir)))
        assert choices["regression.pair_encoding"].value == recipe.regression.pair_encoding
        return recipe.regression.pair_encoding

    assert chosen(sbert) == "bi_encoder"
    assert chosen(tiny_model_dir) == "cross_encoder"
    assert chosen(sbert, method="lora") == "cross_encoder"
    code, _, stderr = run_cli(["run", str(_pair_recipe(tmp_path, sbert, pair_encoding="bi_encoder")),
                               "--set", "model.peft.method=lora", "--dry-run"])
    assert code == 2 and "regression.pair_encoding" in stderr


@pytest.mark.parametrize("which", ["cross_encoder", "bi_encoder"])
def test_the_model_cards_snippet_scores_what_tailor_predict_does(which: str, regression_run: Path,
                                                                 bi_encoder_run: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    tmp = regression_run if which == "cross_encoder" else bi_encoder_run
    item = {"text": "the service was great and lovely"} | ({"text_pair": "shop review 3"} if tmp is bi_encoder_run
                                                            else {})
    (tmp / "one.jsonl").write_text(json.dumps(item) + "\n")
    code, _, stderr = run_cli(["predict", str(tmp / "run"), "--input", str(tmp / "one.jsonl"), "--out",
                               str(tmp / "one-out.jsonl")])
    assert code == 0, stderr
    expected = json.loads((tmp / "one-out.jsonl").read_text())["score"]
    card = (tmp / "run" / "model" / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    snippet = snippet.replace('texts = ["your text here"]', f"texts = [{item['text']!r}]")
    snippet = snippet.replace('pairs = ["a second text for each"]', f"pairs = [{item.get('text_pair')!r}]")
    monkeypatch.chdir(tmp / "run" / "model")
    namespace: dict = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)  # the card's own code
    assert namespace["scores"][0] == pytest.approx(expected, abs=1e-4)


def test_auto_gives_the_bi_encoder_smaller_steps_than_a_new_head(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import load_recipe
    from tailorlm.tasks import get_task
    from tailorlm.train import auto

    recipe = load_recipe(_pair_recipe(tmp_path, tiny_model_dir, pair_encoding="bi_encoder"))
    task = get_task("regression")
    model = task.build_model(resolve_model(str(tiny_model_dir)), recipe, task.prepare_data(recipe, None))
    params = auto.body_parameters(model)
    plain = auto.choose_learning_rate("regression", params, False)
    bi = auto.choose_learning_rate("regression", params, False, model)
    assert bi.value == pytest.approx(plain.value * 0.3) and "bi-encoder" in bi.reason
