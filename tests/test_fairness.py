"""Bias audits (fairness/): metrics by group, counterfactual swaps, reweighing, the run hooks and `tailor audit`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import NEGATIVE, NOUNS, POSITIVE
from tests.helpers import run_cli

# ------------------------------------------------------------------------------------------------ by group (unit)


def _rows(gold: list[str], predicted: list[str], probe: list[str] | None = None) -> list[dict[str, Any]]:
    rows = [{"label": g, "predicted": p} for g, p in zip(gold, predicted, strict=True)]
    for row, p in zip(rows, probe or [], strict=False):
        row["baselines"] = {"linear_probe": {"predicted": p}}
    return rows


# group A: all right; group B: 1 of 4 right; group C: one row, below min_group_size
GOLD = ["pos", "pos", "neg", "neg"] * 2 + ["pos"]
PRED = ["pos", "pos", "neg", "neg", "pos", "neg", "pos", "pos", "neg"]
GROUPS = ["A"] * 4 + ["B"] * 4 + ["C"]


def test_group_metrics_equal_hand_computed_values() -> None:
    from tailorlm.fairness.audit import audit_predictions

    audit = audit_predictions(_rows(GOLD, PRED), GROUPS, ["neg", "pos"], "segment", min_group_size=2)
    tuned = audit["systems"]["tuned"]
    a, b, c = (tuned["by_group"][g] for g in "ABC")
    assert (a["n"], b["n"], c["n"]) == (4, 4, 1)
    assert a["accuracy"] == 1.0 and b["accuracy"] == 0.25 and c["accuracy"] == 0.0
    # B: F1(pos) = 2*1 / (2 + 3) = 0.4, F1(neg) = 0 -> macro 0.2
    assert a["f1_macro"] == 1.0 and b["f1_macro"] == pytest.approx(0.2)
    assert a["selection_rate"] == {"neg": 0.5, "pos": 0.5}
    assert b["selection_rate"] == {"neg": 0.25, "pos": 0.75}
    assert b["recall"] == {"neg": 0.0, "pos": 0.5}
    assert c["recall"] == {"neg": None, "pos": 0.0}  # no 'neg' text in C: nothing to recall, not 0
    assert tuned["overall"]["n"] == 9 and tuned["overall"]["accuracy"] == pytest.approx(5 / 9)
    assert c["too_small"] and not a["too_small"] and tuned["compared"] == ["A", "B"]
    assert audit["small_groups"] == ["C"] and audit["groups"] == {"A": 4, "B": 4, "C": 1}

    accuracy = tuned["gaps"]["accuracy"]
    assert (accuracy["difference"], accuracy["ratio"], accuracy["lowest"], accuracy["highest"]) == (0.75, 0.25, "B",
                                                                                                    "A")
    assert accuracy["ci"]["low"] <= 0.75 <= accuracy["ci"]["high"]
    assert tuned["gaps"]["f1_macro"]["difference"] == pytest.approx(0.8)
    # one-vs-rest on the compared groups: selection rates 0.5 vs 0.75; TPR(pos) 1 vs 0.5, FPR(pos) 0 vs 1
    assert tuned["demographic_parity_difference"] == {"neg": pytest.approx(0.25), "pos": pytest.approx(0.25)}
    assert tuned["equalized_odds_difference"]["pos"] == pytest.approx(1.0)
    from fairlearn.metrics import equalized_odds_difference

    truth, predicted = (np.array(GOLD[:8]) == "pos").astype(int), (np.array(PRED[:8]) == "pos").astype(int)
    assert equalized_odds_difference(truth, predicted, sensitive_features=GROUPS[:8]) == pytest.approx(1.0)


def test_a_group_without_a_label_does_not_fake_an_odds_gap() -> None:
    """fairlearn counts an undefined true-positive rate as 0; the audit leaves such a group out of that label."""
    from tailorlm.fairness.audit import audit_predictions

    gold, predicted = ["pos", "neg", "neg", "neg"], ["pos", "neg", "neg", "neg"]
    tuned = audit_predictions(_rows(gold, predicted), ["A", "A", "B", "B"], ["neg", "pos"], "g", 1)["systems"]["tuned"]
    assert tuned["equalized_odds_difference"] == {"neg": None, "pos": None}  # B has no 'pos' text: one group left


def test_equalized_odds_is_fairlearns_on_the_groups_that_have_both_rates() -> None:
    """A seeded 3-label, 3-group example: each label's one-vs-rest equalized odds equals fairlearn's
    ``equalized_odds_difference`` (on every group where each has the label and the rest; without group C where
    C has no text of the label, where fairlearn on all rows would invent a gap)."""
    from fairlearn.metrics import equalized_odds_difference

    from tailorlm.fairness.audit import audit_predictions

    rng = np.random.default_rng(4)
    labels = ["a", "b", "c"]
    groups = np.array(["A"] * 30 + ["B"] * 30 + ["C"] * 30, dtype=object)
    gold = rng.choice(labels, size=90)
    gold[60:][gold[60:] == "c"] = "a"  # group C has no 'c' text
    predicted = np.where(rng.random(90) < 0.7, gold, rng.choice(labels, size=90))
    odds = audit_predictions(_rows(list(gold), list(predicted)), list(groups), labels, "g", 5)["systems"]["tuned"][
        "equalized_odds_difference"]
    for label in ("a", "b"):
        expected = equalized_odds_difference((gold == label).astype(int), (predicted == label).astype(int),
                                             sensitive_features=groups)
        assert odds[label] == pytest.approx(expected), label
    keep = groups != "C"
    expected_c = equalized_odds_difference((gold[keep] == "c").astype(int), (predicted[keep] == "c").astype(int),
                                           sensitive_features=groups[keep])
    assert odds["c"] == pytest.approx(expected_c)
    everywhere = equalized_odds_difference((gold == "c").astype(int), (predicted == "c").astype(int),
                                           sensitive_features=groups)
    assert everywhere > odds["c"] + 0.2, "fairlearn on all rows counts C's missing true-positive rate as 0"


def test_tuning_that_widens_the_gap_is_reported_against_the_best_baseline() -> None:
    from tailorlm.fairness.audit import audit_predictions
    from tailorlm.fairness.summary import summarize

    probe = ["pos", "pos", "neg", "pos", "pos", "pos", "neg", "pos", "pos"]  # 3 of 4 right in A and in B
    audit = audit_predictions(_rows(GOLD, PRED, probe), GROUPS, ["neg", "pos"], "segment", min_group_size=2)
    assert audit["systems"]["linear_probe"]["gaps"]["accuracy"]["difference"] == 0.0
    change = audit["vs_best_baseline"]["accuracy"]
    assert audit["vs_best_baseline"]["baseline"] == "linear_probe"
    assert change["direction"] == "widened" and change["change"] == pytest.approx(0.75)
    lines = summarize(audit)
    assert any(line.startswith("Accuracy is 75 points lower for group 'B' (0.25) than for group 'A' (1.00)")
               for line in lines), lines
    assert any("widened the accuracy gap" in line for line in lines)
    assert any("'C' (1 rows)" in line for line in lines)


def test_empty_group_cells_form_a_missing_group() -> None:
    from tailorlm.fairness.audit import group_names

    assert group_names(["north", None, "  ", float("nan"), " south  east "]) == [
        "north", "(missing)", "(missing)", "(missing)", "south east"]


# ------------------------------------------------------------------------------------------------ counterfactual


def test_swap_is_whole_words_both_ways_and_keeps_case() -> None:
    from tailorlm.fairness.counterfactual import GENDER_PAIRS, swap_terms

    text = "He said his wife met HER brother; other men and Mr. Shell stayed. the theme"
    assert swap_terms(text, GENDER_PAIRS) == (
        "She said her husband met HIS sister; other women and Mrs. Shell stayed. the theme")
    assert swap_terms("She thanked him.", [("he", "she"), ("him", "her")]) == "He thanked her."
    assert swap_terms("Anna met Bob", [("anna", "maria")]) == "Maria met Bob"


def test_counterfactual_counts_flips_and_rows_without_terms() -> None:
    from tailorlm.fairness.counterfactual import counterfactual_audit

    def says_he(texts: list[str]) -> np.ndarray:  # a "model" that reads only the pronoun
        he = np.array([0.9 if " he " in f" {t.lower()} " else 0.2 for t in texts])
        return np.stack([1 - he, he], axis=1)

    texts = ["he paid the bill", "she paid the bill", "they paid the bill", "the man paid"]
    result = counterfactual_audit(texts, says_he, ["no", "yes"], [("he", "she"), ("man", "woman")], "custom")
    assert (result["rows_swapped"], result["rows_without_terms"], result["flips"]) == (3, 1, 2)
    assert result["flip_rate"] == pytest.approx(2 / 3)
    assert result["mean_abs_change"] == pytest.approx((0.7 + 0.7 + 0.0) / 3)
    by_pair = {p["pair"]: p for p in result["by_pair"]}
    assert by_pair["he/she"]["flips"] == 2 and by_pair["man/woman"] == {
        "pair": "man/woman", "rows": 1, "flips": 0, "flip_rate": 0.0, "mean_abs_change": 0.0}
    assert {(e["text"], e["swapped"], e["label"], e["swapped_label"]) for e in result["examples"]} == {
        ("he paid the bill", "she paid the bill", "yes", "no"), ("she paid the bill", "he paid the bill", "no", "yes")}


# ------------------------------------------------------------------------------------------------ reweighing


def test_reweighing_weights_follow_the_formula() -> None:
    from tailorlm.fairness.reweigh import reweighing

    groups, labels = ["a", "a", "a", "b"], ["x", "x", "y", "y"]
    weights, cells = reweighing(groups, labels)
    # w(g, y) = n_g * n_y / (n * n_gy): (a,x) 3*2/(4*2), (a,y) 3*2/(4*1), (b,y) 1*2/(4*1)
    assert weights.tolist() == [0.75, 0.75, 1.5, 0.5]
    assert [(c["group"], c["label"], c["rows"], c["weight"]) for c in cells] == [
        ("a", "x", 2, 0.75), ("a", "y", 1, 1.5), ("b", "y", 1, 0.5)]
    for cell in cells:  # each cell's total weight is the count independence predicts
        assert cell["rows"] * cell["weight"] == pytest.approx(cell["expected_rows"])


def test_weights_reach_the_loss_through_the_trainer(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A weight column survives Trainer's column removal and collation; weight 0 on a class removes it from the loss."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
    from transformers import TrainingArguments as Args

    from tailorlm.train.objective import Objective
    from tailorlm.train.resume import ResumableTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    texts = ["the bill was late", "the app was great", "he was rude", "she was kind"]
    labels = [0, 1, 0, 1]
    encoded = dict(tokenizer(texts))
    data = Dataset.from_dict(encoded | {"labels": labels, "weight": [0.0, 1.0, 0.0, 1.0]})
    trainer = ResumableTrainer(model=model, args=Args(output_dir=str(tmp_path), per_device_train_batch_size=4,
                                                      use_cpu=True, report_to=[]),
                               train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
    trainer.objective = Objective.for_head("SEQ_CLS")
    batch = next(iter(trainer.get_train_dataloader()))
    assert "weight" in batch
    model.eval()
    with torch.no_grad():
        weighted = trainer.compute_loss(model, dict(batch))
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       token_type_ids=batch["token_type_ids"]).logits
        per_example = torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="none")
        unweighted = trainer.compute_loss(model, {k: v for k, v in batch.items() if k != "weight"})
    kept = batch["labels"] == 1  # class 0 has weight 0
    assert float(weighted) == pytest.approx(float(per_example[kept].mean()), rel=1e-5)
    assert float(unweighted) == pytest.approx(float(per_example.mean()), rel=1e-5)
    assert abs(float(weighted) - float(unweighted)) > 1e-4


# ------------------------------------------------------------------------------------------------ data


def _pronoun_rows(n: int, seed: int, regions: list[str]) -> list[dict[str, str]]:
    """Texts whose label is their pronoun (he: positive, she: negative); adjectives and nouns carry nothing."""
    rng = random.Random(seed)
    combos = [(p, noun, adj) for p in ("he", "she") for noun in NOUNS for adj in POSITIVE + NEGATIVE]
    rng.shuffle(combos)
    return [{"text": f"{p} said the {noun} was {adj}", "label": "positive" if p == "he" else "negative",
             "region": regions[i % len(regions)]} for i, (p, noun, adj) in enumerate(combos[:n])]


def test_group_column_rides_through_cleaning_and_splitting_but_not_into_the_model(tmp_path: Path,
                                                                                   tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tailorlm.data.pipeline import prepare
    from tailorlm.recipe import DataConfig, Recipe
    from tailorlm.tasks.classification.data import ClassificationRows
    from tailorlm.tasks.classification.task import ClassificationTask

    rows = _pronoun_rows(60, seed=1, regions=["north", "south", ""])
    rows.append(dict(rows[0], region="elsewhere"))  # a duplicate: the first copy (and its group) is kept
    path = tmp_path / "data.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    data = prepare(DataConfig(train=str(path), split={"validation": 0.2, "test": 0.2}),
                   ClassificationRows({"region": "fairness.group_column"}))
    original = pd.read_csv(path, keep_default_na=False)
    for frame in (data.train, data.validation, data.test):
        assert "extra:region" in frame.columns
        expected = [original.at[int(r) - 1, "region"] or None for r in frame["row"]]
        assert [v or None for v in frame["extra:region"]] == expected
    assert sum(map(len, (data.train, data.validation, data.test))) == 60
    assert [r["reason"] for r in data.rejects] == ["duplicate"]
    recipe = Recipe(data={"train": str(path)}, fairness={"group_column": "region"})
    encoded = ClassificationTask().encode(recipe, data, AutoTokenizer.from_pretrained(tiny_model_dir))
    assert set(encoded.train.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels", "length"}


def test_missing_group_column_is_one_line_naming_the_key(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "data.csv"
    pd.DataFrame(_pronoun_rows(40, seed=2, regions=["north"])).to_csv(path, index=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), "model": {"name": str(tiny_model_dir)},
                                      "data": {"train": str(path)}, "fairness": {"group_column": "regoin"}}))
    code, _, stderr = run_cli(["prepare", str(recipe)])
    assert code == 2
    line = stderr.strip()
    assert "\n" not in line and str(path) in line and "fairness.group_column" in line
    assert "columns present: text, label, region" in line and "did you mean 'region'" in line


def test_recipe_checks_of_the_fairness_section() -> None:
    from tailorlm.errors import RecipeError
    from tailorlm.recipe import load_recipe

    with pytest.raises(RecipeError, match=r"needs fairness\.group_column"):
        load_recipe(None, ["fairness.mitigation=reweight"])
    with pytest.raises(RecipeError, match="audits classifiers, not task 'qa'"):
        load_recipe(None, ["task=qa", "fairness.counterfactual=gender"])
    with pytest.raises(RecipeError, match="two different terms"):
        load_recipe(None, ["fairness.counterfactual=[[he, he]]"])
    assert load_recipe(None, ["fairness.counterfactual=[[Mr, Mrs]]"]).fairness.counterfactual == [["Mr", "Mrs"]]


# ------------------------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A run whose labels follow the pronoun, with regions skewed by label (so reweighing has work to do)."""
    work = tmp_path_factory.mktemp("fair")
    rows = _pronoun_rows(200, seed=3, regions=["north", "south", "north", "south", ""])
    for i, row in enumerate(rows):  # skew: north mostly 'he' (positive), south mostly 'she' (negative)
        if row["region"] == "south" and row["label"] == "positive" and i % 3:
            row["region"] = "north"
    train, test = rows[:150], rows[150:]
    test[0]["region"] = test[1]["region"] = "island"  # a group too small to compare
    pd.DataFrame(train).to_csv(work / "train.csv", index=False)
    pd.DataFrame(test).to_csv(work / "test.csv", index=False)
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "output_dir": str(work / "out"), "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(work / "train.csv"), "test": str(work / "test.csv"), "split": {"validation": 0.15}},
        "training": {"epochs": 8, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0,
                     "early_stopping_patience": None},
        "fairness": {"group_column": "region", "counterfactual": "gender", "mitigation": "reweight",
                     "min_group_size": 5, "max_flip_rate": 0.2},
    }))
    code, _, stderr = run_cli(["run", str(recipe)])
    # the model reads the pronoun, so swapping he/she flips most labels: the gate fails the run (exit 3),
    # after everything was written
    assert code == 3, stderr
    [line] = [x for x in stderr.splitlines() if x.startswith("error:")]
    assert "fairness gate failed: counterfactual flip rate" in line and "fairness.max_flip_rate 0.2" in line
    return work


def test_run_writes_the_audit_to_metrics_predictions_and_reports(audited_run: Path) -> None:
    out = audited_run / "out"
    metrics = json.loads((out / "metrics.json").read_text())
    fair = metrics["fairness"]
    assert fair["group_column"] == "region" and fair["n"] == metrics["data"]["test"] == 50
    assert sum(fair["groups"].values()) == 50 and fair["missing"] == fair["groups"]["(missing)"] > 0
    assert fair["small_groups"] == ["island"]
    assert set(fair["systems"]) == {"tuned", "zero_shot", "linear_probe"}
    tuned = fair["systems"]["tuned"]
    assert tuned["by_group"]["island"]["too_small"] and "island" not in tuned["compared"]
    assert tuned["overall"]["accuracy"] == pytest.approx(metrics["tuned"]["accuracy"])
    assert fair["vs_best_baseline"]["baseline"] in {"zero_shot", "linear_probe"}
    assert fair["summary"] and all(isinstance(s, str) for s in fair["summary"])
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["group"] for p in predictions].count("island") == 2
    html, md = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert 'id="fairness"' in html and "Gaps between groups" in html and "Counterfactual swaps" in html
    assert "## Fairness" in md and "Reweighing (training)" in md


def test_gate_checks_gaps_and_flip_rate_and_refuses_to_pass_on_nothing() -> None:
    from tailorlm.fairness.gate import check_gate
    from tailorlm.recipe import FairnessConfig

    gap = {"difference": 0.12, "highest": "north", "lowest": "south"}
    audit = {"systems": {"tuned": {"gaps": {"accuracy": gap, "f1_macro": None}}},
             "counterfactual": {"flip_rate": 0.01}}
    assert check_gate(audit, FairnessConfig(group_column="region")) is None  # no limit set: no gate
    loose = check_gate(audit, FairnessConfig(group_column="region", counterfactual="gender", max_gap=0.2,
                                             max_flip_rate=0.05))
    assert loose["passed"] and loose["checked"] == ["accuracy gap", "counterfactual flip rate"]
    strict = check_gate(audit, FairnessConfig(group_column="region", max_gap=0.1))
    assert not strict["passed"] and strict["failures"] == [
        "accuracy gap 0.120 between 'north' and 'south' is above fairness.max_gap 0.1"]
    with pytest.raises(ValueError, match=r"max_flip_rate needs fairness\.counterfactual"):
        FairnessConfig(group_column="region", max_flip_rate=0.1)
    nothing = check_gate({"systems": {"tuned": {"gaps": {}}}}, FairnessConfig(group_column="region", max_gap=0.1))
    assert not nothing["passed"] and "nothing to check" in nothing["failures"][0]


def test_a_model_that_reads_the_pronoun_flips_when_it_is_swapped(audited_run: Path) -> None:
    metrics = json.loads((audited_run / "out" / "metrics.json").read_text())
    gate = metrics["fairness"]["gate"]
    assert not gate["passed"] and gate["max_flip_rate"] == 0.2
    assert "Fairness gate" in (audited_run / "out" / "report.md").read_text()
    assert metrics["tuned"]["accuracy"] >= 0.8  # it learned the pronoun
    cf = metrics["fairness"]["counterfactual"]
    assert cf["rows_swapped"] == 50 and cf["rows_without_terms"] == 0  # every text has he or she
    assert cf["flip_rate"] > 0.5 and cf["mean_abs_change"] > 0
    assert cf["examples"] and {p["pair"] for p in cf["by_pair"]} == {"he/she"}


def test_reweighing_reaches_the_training_loss(audited_run: Path) -> None:
    out = audited_run / "out"
    mitigation = json.loads((out / "metrics.json").read_text())["fairness"]["mitigation"]
    cells = mitigation["cells"]
    n = mitigation["train_rows"]
    assert sum(c["rows"] for c in cells) == n
    for cell in cells:
        n_g = sum(c["rows"] for c in cells if c["group"] == cell["group"])
        n_y = sum(c["rows"] for c in cells if c["label"] == cell["label"])
        assert cell["weight"] == pytest.approx(n_g * n_y / (n * cell["rows"]))
    assert max(c["weight"] for c in cells) > 1.2 > 0.8 > min(c["weight"] for c in cells)  # the skew is corrected

    plain = audited_run / "plain"
    # the same run without weights: same seed, data, batches and initial weights, so the first batch's loss (logged
    # before any update) can only differ through the weights
    code, _, stderr = run_cli(["run", str(audited_run / "recipe.yaml"), "--set", f"output_dir={plain}",
                               "--set", "fairness.mitigation=none", "--set", "fairness.counterfactual=none",
                               "--set", "fairness.max_flip_rate=null",
                               "--set", "training.epochs=1", "--set", "baseline.zero_shot=false",
                               "--set", "baseline.linear_probe=false"])
    assert code == 0, stderr
    assert "mitigation" not in json.loads((plain / "metrics.json").read_text())["fairness"]

    def first_loss(run: Path) -> float:
        return next(e["loss"] for e in json.loads((run / "log_history.json").read_text()) if "loss" in e)

    assert abs(first_loss(out) - first_loss(plain)) > 1e-4


# ------------------------------------------------------------------------------------------------ tailor audit


def test_tailor_audit_finds_the_mislabelled_group(audited_run: Path, tmp_path: Path) -> None:
    from tailorlm.fairness.pipeline import audit_saved_model

    rows = _pronoun_rows(80, seed=9, regions=["north", "south"])
    clean = tmp_path / "clean.jsonl"
    pd.DataFrame(rows).to_json(clean, orient="records", lines=True)
    for row in rows:  # south's texts systematically mislabelled
        if row["region"] == "south":
            row["label"] = "negative" if row["label"] == "positive" else "positive"
    noisy = tmp_path / "noisy.jsonl"
    pd.DataFrame(rows).to_json(noisy, orient="records", lines=True)
    out = tmp_path / "audit.json"
    code, stdout, stderr = run_cli(["audit", str(audited_run / "out"), "--data", str(noisy), "--group-column",
                                    "region", "--counterfactual", "gender", "--out", str(out)])
    assert code == 0, stderr
    assert "north" in stdout and "south" in stdout and "points lower for group 'south'" in stdout
    audit = json.loads(out.read_text())
    gap = audit["systems"]["tuned"]["gaps"]["accuracy"]
    assert gap["lowest"] == "south" and gap["difference"] > 0.5
    assert audit["counterfactual"]["rows_swapped"] == 80
    control = audit_saved_model(audited_run / "out", clean, "region")["systems"]["tuned"]["gaps"]["accuracy"]
    assert control["difference"] < gap["difference"] - 0.4


def test_tailor_audit_bad_input_is_one_line(audited_run: Path, tmp_path: Path) -> None:
    model = audited_run / "out"
    data = tmp_path / "data.csv"
    pd.DataFrame(_pronoun_rows(20, seed=4, regions=["north"])).to_csv(data, index=False)
    unlabelled = tmp_path / "texts.csv"
    pd.DataFrame({"text": ["he said so"], "region": ["north"]}).to_csv(unlabelled, index=False)
    other = tmp_path / "qa-model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    (other / "tailor_model.json").write_text(json.dumps({"task": "qa"}))
    cases = [
        (["--data", str(data), "--group-column", "area"], "no column 'area' (--group-column)"),
        (["--data", str(unlabelled), "--group-column", "region"], "no column 'label' (--label-column)"),
        (["--data", str(data), "--group-column", "region", "--counterfactual", "he-she"], "--counterfactual"),
    ]
    for args, expected in cases:
        code, _, stderr = run_cli(["audit", str(model), *args])
        assert code == 2 and expected in stderr and stderr.strip().count("\n") == 0, stderr
    code, _, stderr = run_cli(["audit", str(other), "--data", str(data), "--group-column", "region"])
    assert code == 2 and "holds a qa model" in stderr and stderr.strip().count("\n") == 0, stderr
