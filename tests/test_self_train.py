"""Self-training (adapt.self_train): exact pseudo-label selection, no labelled text pseudo-labelled again, and a
`tailor run` whose metrics.json says what teacher and student scored and which one it kept."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

from tailorlm.errors import DataError, RecipeError
from tailorlm.recipe import recipe_from_dict
from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------- selection


def test_selection_is_exact_on_a_hand_made_matrix() -> None:
    from tailorlm.adapt.self_train import select_pseudo

    probs = np.array([
        [0.95, 0.05],  # 0: label 0, 0.95
        [0.10, 0.90],  # 1: label 1, 0.90 (exactly the threshold: kept)
        [0.89, 0.11],  # 2: label 0, below
        [0.02, 0.98],  # 3: label 1, 0.98
        [0.99, 0.01],  # 4: label 0, 0.99
        [0.93, 0.07],  # 5: label 0, 0.93
        [0.97, 0.03],  # 6: label 0, 0.97
        [0.50, 0.50],  # 7: below
    ])
    assert select_pseudo(probs, 0.9).tolist() == [4, 3, 6, 0, 5, 1]  # highest first, all above the threshold
    assert select_pseudo(probs, 0.96).tolist() == [4, 3, 6]
    # cap 4, training set 50/50: at most 2 per label, the two most confident of each
    assert select_pseudo(probs, 0.9, 4, np.array([30, 30])).tolist() == [4, 3, 6, 1]
    # cap 4, training set 3:1: label 0 may take 3, label 1 one
    assert select_pseudo(probs, 0.9, 4, np.array([60, 20])).tolist() == [4, 3, 6, 0]
    # shares are floored, never rounded up past the cap: 5 * 1/3 -> 1, 5 * 2/3 -> 3
    assert select_pseudo(probs, 0.9, 5, np.array([10, 20])).tolist() == [4, 3, 1]
    assert select_pseudo(probs, 0.999).tolist() == []


def test_student_is_kept_only_when_not_worse() -> None:
    from tailorlm.adapt.self_train import _decide

    def side(value: float) -> dict:
        return {"validation": {"f1_macro": value, "loss": value}}

    assert _decide("f1_macro", True, side(0.8), side(0.8))[0] is True  # a tie keeps the student
    assert _decide("f1_macro", True, side(0.8), side(0.79))[0] is False
    assert _decide("loss", False, side(0.5), side(0.6))[0] is False
    kept, reason = _decide("loss", False, side(0.5), side(0.4))
    assert kept and "student" in reason and "0.4000" in reason


# ------------------------------------------------------------------------------------------- unlabelled text


def test_unlabelled_texts_equal_to_labelled_ones_are_dropped_and_counted(tmp_path: Path) -> None:
    from tailorlm.adapt.self_train import read_unlabelled

    data = SimpleNamespace(train=pd.DataFrame({"text": ["the bill was late"]}),
                           validation=pd.DataFrame({"text": ["the app was great"]}),
                           test=pd.DataFrame({"text": ["the meter was broken"]}))
    path = tmp_path / "pool.txt"
    path.write_text("the call was quick\nthe bill was late\nthe app  was\u00a0great\nthe\u200b meter was broken\n"
                    "the call was quick\n\nthe refund was slow\n", encoding="utf-8")
    recipe = recipe_from_dict({"adapt": {"self_train": True, "unlabelled": str(path)}})
    pool = read_unlabelled(recipe, data)
    assert pool.texts == ["the call was quick", "the refund was slow"]
    assert pool.counts == {"rows": 7, "dropped_leaking": 3, "dropped_duplicate": 1, "dropped_empty": 1}


def test_recipe_refuses_self_training_it_cannot_do() -> None:
    from tailorlm.recipe import load_recipe

    with pytest.raises(RecipeError, match=r"adapt\.self_train pseudo-labels classes, not task 'generation'"):
        load_recipe(None, ["task=generation", "adapt.self_train=true", "adapt.text=pool.txt"])
    with pytest.raises(RecipeError, match=r"set adapt\.unlabelled \(or adapt\.text\)"):
        load_recipe(None, ["adapt.self_train=true"])
    assert load_recipe(None, ["adapt.self_train=true", "adapt.text=pool.txt"]).adapt.unlabelled is None


# ------------------------------------------------------------------------------------------- tailor run


@pytest.fixture(scope="module")
def self_train_recipe(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("self-train")
    rows = sentiment_rows(300)
    data = work / "reviews.csv"
    pd.DataFrame(rows[:100]).to_csv(data, index=False)
    pool = work / "pool.csv"  # 200 new texts plus 5 copies of labelled ones, which must never be pseudo-labelled
    pd.DataFrame({"body": [r["text"] for r in rows[100:300]] + [r["text"] for r in rows[:5]]}).to_csv(pool,
                                                                                                       index=False)
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification",
        "output_dir": str(work / "out"),
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(data), "split": {"validation": 0.2, "test": 0.2}},
        "training": {"epochs": 6, "batch_size": 16, "learning_rate": 5e-3, "warmup": 0.0,
                     "early_stopping_patience": None},
        "baseline": {"linear_probe": False, "zero_shot": False},
        "adapt": {"self_train": True, "unlabelled": str(pool), "text_column": "body", "threshold": 0.5,
                  "max_pseudo": 80},
    }))
    return recipe


def test_tailor_run_self_trains_and_reports_the_kept_model(self_train_recipe: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.train import trainer

    fitted_rows: list[int] = []
    fit = trainer.fit

    def spy_fit(task: object, model: object, tokenizer: object, encoded: object, *args: object, **kw: object) -> object:
        fitted_rows.append(len(encoded.train))
        return fit(task, model, tokenizer, encoded, *args, **kw)

    monkeypatch.setattr(trainer, "fit", spy_fit)
    out = self_train_recipe.parent / "out"
    code, stdout, stderr = run_cli(["run", str(self_train_recipe)])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["adapt"]["self_training"]
    assert len(record["rounds"]) == 1 and "pretrain" not in metrics["adapt"]
    first = record["rounds"][0]
    assert first["unlabelled_rows"] == 205 and first["dropped_leaking"] == 5 and first["candidates"] == 200
    n_train = metrics["data"]["train"]
    assert first["above_threshold"] == 200  # two classes: the top probability is always >= 0.5
    assert first["pseudo_total"] == sum(first["pseudo_labelled"].values()) <= 80
    # the teacher learned (validation macro-F1 1.0), so each label fills its cap: 50/50 training labels, 40 each
    assert first["teacher"]["validation"]["f1_macro"] == 1.0
    assert first["pseudo_labelled"] == {"negative": 40, "positive": 40}, first
    # the teacher trained on the labelled rows, the student on those plus every pseudo-labelled row
    assert fitted_rows == [n_train, n_train + first["pseudo_total"]]
    pseudo = [json.loads(line) for line in (out / "pseudo_labels.jsonl").read_text().splitlines()]
    assert len(pseudo) == first["pseudo_total"] and all(p["confidence"] >= 0.5 and p["round"] == 1 for p in pseudo)
    labelled = set(pd.read_csv(self_train_recipe.parent / "reviews.csv")["text"])
    assert not {p["text"] for p in pseudo} & labelled
    truth = {r["text"]: r["label"] for r in sentiment_rows(300)}
    assert sum(p["label"] == truth[p["text"]] for p in pseudo) == len(pseudo)  # a sure teacher labels this right
    # what was kept is what metrics.json reports as the tuned model, and the decision follows the rule
    kept = first["student"] if record["kept"] == "student" else first["teacher"]
    assert first["kept"] == record["kept"]
    tuned = {k: v for k, v in metrics["tuned"].items() if k in kept["test"]}
    assert tuned == kept["test"] and len(tuned) > 3
    assert metrics["validation"]["f1_macro"] == kept["validation"]["f1_macro"]
    better = first["student"]["validation"]["f1_macro"] >= first["teacher"]["validation"]["f1_macro"]
    assert record["kept"] == ("student" if better else "teacher")
    assert f"kept the {record['kept']}" in stderr + stdout
    md = (out / "report.md").read_text()
    assert "## Domain adaptation" in md and "### Self-training" in md and f"kept the {record['kept']}" in md
    html = (out / "report.html").read_text()
    assert 'id="domain-adaptation"' in html and "<h3>Self-training</h3>" in html
    assert "continued masked-LM" not in md  # no pretraining ran, so its lead and table are left out


def test_missing_unlabelled_file_is_one_line(self_train_recipe: Path, tmp_path: Path) -> None:
    code, _, stderr = run_cli(["run", str(self_train_recipe), "--set", f"output_dir={tmp_path / 'bad'}",
                               "--set", f"adapt.unlabelled={tmp_path / 'no-such.csv'}"])
    assert_one_line_error(code, stderr, "no-such.csv", "adapt.unlabelled", "not found")
    assert not (tmp_path / "bad" / "model").exists()


def test_non_classification_task_is_one_line(self_train_recipe: Path, tmp_path: Path) -> None:
    code, _, stderr = run_cli(["run", str(self_train_recipe), "--set", f"output_dir={tmp_path / 'bad'}",
                               "--set", "task=generation"])
    assert_one_line_error(code, stderr, "adapt.self_train", "generation")


def test_bad_unlabelled_file_is_a_data_error(tmp_path: Path) -> None:
    from tailorlm.adapt.self_train import read_unlabelled

    data = SimpleNamespace(train=pd.DataFrame({"text": ["a b"]}), validation=pd.DataFrame({"text": ["c d"]}),
                           test=pd.DataFrame({"text": ["e f"]}))
    path = tmp_path / "pool.txt"
    path.write_text("a b\nc d\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no unlabelled text left after dropping 2 .*adapt\.unlabelled"):
        read_unlabelled(recipe_from_dict({"adapt": {"self_train": True, "unlabelled": str(path)}}), data)
    empty_validation = SimpleNamespace(train=data.train, validation=pd.DataFrame({"text": []}), test=data.test)
    with pytest.raises(DataError, match="needs validation rows"):
        read_unlabelled(recipe_from_dict({"adapt": {"self_train": True, "unlabelled": str(path)}}), empty_validation)
