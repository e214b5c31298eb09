"""Counterfactual families, intersectional groups, the representation report and the mitigations (issue 18)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

# The Equity Evaluation Corpus's kind of sentence: a person phrase in an emotion template
EEC_STYLE = [
    ("My mom found herself in a scary situation.", "My dad found himself in a scary situation."),
    ("The situation makes her feel angry.", "The situation makes him feel angry."),
    ("I made her feel sad.", "I made him feel sad."),
    ("I saw her in the market.", "I saw him in the market."),
    ("I talked to her yesterday.", "I talked to him yesterday."),
    ("Her daughter has two children.", "His son has two children."),
    ("This woman told us all about her recent annoying events.", "This man told us all about his recent annoying "
     "events."),
    ("He said the bike is his.", "She said the bike is hers."),
    ("My mum and dad came; Mrs. Smith thanked him.", "My dad and mum came; Mr. Smith thanked her."),
    ("My dad feels happy.", "My mom feels happy."),
    ("HER BROTHER felt glad.", "HIS SISTER felt glad."),
    ("My girlfriend goes to the school in our neighborhood.", "My boyfriend goes to the school in our "
     "neighborhood."),
]
MASCULINE = {"he", "him", "his", "himself", "dad", "man", "mr", "son", "brother", "boyfriend"}
FEMININE = {"she", "her", "hers", "herself", "mom", "mum", "woman", "mrs", "daughter", "sister", "girlfriend"}


def test_gender_swaps_are_grammatical_on_corpus_style_sentences() -> None:
    from tailorlm.fairness.counterfactual import Swapper
    from tailorlm.fairness.families import resolve_family

    swap = Swapper(resolve_family("gender")["pairs"])
    for text, expected in EEC_STYLE:
        assert swap(text) == expected, text
        assert swap(swap(text)) in (text, text.replace("mum", "mom")), text  # swapping back restores it
        words = set(re.findall(r"[a-z]+", swap(text).lower()))
        if "herself" in words or "himself" in words:  # never a mixed-up pair: "my mom found himself"
            assert not (words & MASCULINE and words & {"herself"}) and not (words & FEMININE and "himself" in words)


def test_name_families_cover_two_axes_and_swap_capitalised_names_only() -> None:
    from tailorlm.fairness.counterfactual import Swapper
    from tailorlm.fairness.families import builtin_families, resolve_family

    race = Swapper(resolve_family("race_names")["pairs"])
    assert race("Jack used a jack; Ebony's car.") == "Lamar used a jack; Amanda's car."
    gender_names = Swapper(resolve_family("gender_names")["pairs"])
    assert gender_names("Adam found himself alone, said his mom.") == "Amanda found herself alone, said her dad."
    families = builtin_families()
    assert {"gender", "gender_names", "race_names", "nationality", "religion", "age"} <= set(families)
    for name, family in families.items():
        assert family["source"] and family["axis"], name
        terms = [t.lower() for pair in family["pairs"] for t in pair]
        assert all(a.lower() != b.lower() for a, b in family["pairs"]), name
        if name != "gender":  # gender has deliberate many-to-one partners (mom/mum -> dad)
            assert len(terms) == len(set(terms)), (name, [t for t in terms if terms.count(t) > 1])
    assert Swapper(resolve_family("religion")["pairs"])("A Christian went to church.") == "A Muslim went to mosque."
    assert Swapper(resolve_family("nationality")["pairs"])("The Irish team") == "The Somali team"


def test_recipe_takes_family_names_user_families_and_refuses_unknown_ones() -> None:
    from tailorlm.fairness.families import resolve_families
    from tailorlm.recipe import FairnessConfig

    cfg = FairnessConfig(group_column=["gender", "race"], counterfactual=["gender_names", "dialect"],
                         swap_families={"dialect": [["y'all", "you all"]]})
    assert cfg.group_columns == ["gender", "race"] and cfg.active
    names = [f["name"] for f in resolve_families(cfg.counterfactual, cfg.swap_families)]
    assert names == ["gender_names", "dialect"]
    with pytest.raises(ValueError, match="unknown family 'races'"):
        FairnessConfig(counterfactual="races")
    with pytest.raises(ValueError, match="names a column twice"):
        FairnessConfig(group_column=["a", "a"])
    with pytest.raises(ValueError, match=r"counterfactual_augment needs fairness\.counterfactual"):
        FairnessConfig(mitigation="counterfactual_augment")
    with pytest.raises(ValueError, match=r"postprocess: demographic_parity needs fairness\.group_column"):
        FairnessConfig(postprocess="demographic_parity")


def _frame(n: int, seed: int) -> pd.DataFrame:
    from tailorlm.data.load import extra_column

    rng = np.random.default_rng(seed)
    gender = rng.choice(["female", "male"], n)
    race = rng.choice(["black", "white"], n, p=[0.3, 0.7])
    label = np.where(rng.random(n) < np.where(gender == "female", 0.8, 0.3), "positive", "negative")
    text = [f"{'She' if g == 'female' else 'He'} called about the bill" for g in gender]
    return pd.DataFrame({"text": text, "label": label, extra_column("gender"): gender, extra_column("race"): race})


def test_intersectional_groups_with_small_group_warnings_and_the_representation_report() -> None:
    from tailorlm.fairness.pipeline import audit, representation_of
    from tailorlm.recipe import FairnessConfig

    frame = _frame(120, 0)
    rows = [{"label": y, "predicted": y} for y in frame["label"]]
    cfg = FairnessConfig(group_column=["gender", "race"], counterfactual=["gender", "race_names"], min_group_size=20)

    def proba(texts: list[str]) -> np.ndarray:
        she = np.array([0.8 if t.lower().startswith("she") else 0.3 for t in texts])
        return np.stack([1 - she, she], axis=1)

    result = audit(rows, frame, ["negative", "positive"], cfg, proba)
    names = [g["group_column"] for g in result["groupings"]]
    assert names == ["gender", "race", "gender × race"] and result["groupings"][2]["intersection"]
    inter = result["groupings"][2]
    assert sum(inter["groups"].values()) == 120 and set(inter["groups"]) == {
        "female × black", "female × white", "male × black", "male × white"}
    small = [g for g, n in inter["groups"].items() if n < 20]
    assert inter["small_groups"] == small and small  # the intersection thins the black groups below 20
    assert rows[0]["groups"]["gender × race"] == f"{rows[0]['groups']['gender']} × {rows[0]['groups']['race']}"
    assert any(line.startswith("[gender × race] Too small to compare") for line in result["summary"])
    families = {f["pairs"]: f for f in result["counterfactual_families"]}
    assert families["gender"]["flip_rate"] == 1.0 and families["race_names"]["rows_swapped"] == 0
    rep = representation_of({"train": frame}, cfg)["splits"]["train"]
    female = rep["groups"]["gender"]["female"]
    assert female["rows"] == int((frame["extra:gender"] == "female").sum())
    assert female["labels"]["positive"] == pytest.approx(
        ((frame["extra:gender"] == "female") & (frame["label"] == "positive")).sum() / female["rows"])
    assert rep["terms"]["gender"]["positive"]["share"] == 1.0  # every text holds he or she


def test_threshold_optimizer_narrows_a_planted_parity_gap_on_the_test_split() -> None:
    from tailorlm.fairness.postprocess import threshold_optimizer

    rng = np.random.default_rng(0)

    def split(n: int) -> tuple[np.ndarray, list[str], list[str]]:
        group = rng.choice(["a", "b"], n)
        truth = rng.random(n) < 0.5
        score = np.clip(0.35 * truth + 0.35 + np.where(group == "a", 0.15, -0.15) + rng.normal(0, 0.1, n), 0, 1)
        return score, list(np.where(truth, "yes", "no")), list(group)

    result = threshold_optimizer("demographic_parity", split(600), split(600), ["no", "yes"])
    before, after = result["unmitigated"], result["mitigated"]
    assert before["demographic_parity_difference"] > 0.2
    assert after["demographic_parity_difference"] < before["demographic_parity_difference"] / 2
    assert result["accuracy_cost"] == pytest.approx(before["accuracy"] - after["accuracy"])
    assert result["applied_at_predict"] is True and set(result["rules"]) == {"a", "b"}
    assert "skipped" in threshold_optimizer("equalized_odds", split(50), split(50), ["a", "b", "c"])


def test_counterfactual_augmentation_adds_swapped_copies_to_training_only() -> None:
    from tailorlm.data.pipeline import PreparedData
    from tailorlm.fairness.cda import counterfactual_augment
    from tailorlm.recipe import Recipe

    def frame(texts: list[str], source: str) -> pd.DataFrame:
        return pd.DataFrame({"text": texts, "label": ["positive"] * len(texts), "source": source,
                             "row": range(len(texts))})

    train = frame(["He paid the bill", "They paid late", "She is happy", "He is happy"], "train.csv")
    test = frame(["She paid the bill"], "test.csv")  # the copy of row 0 would leak it
    data = PreparedData(train, frame([], "v"), test, ["negative", "positive"], [], {})
    recipe = Recipe.model_validate({"task": "classification", "data": {"train": "train.csv"},
                                    "fairness": {"counterfactual": "gender", "mitigation": "counterfactual_augment"}})
    out, section = counterfactual_augment(recipe, data)
    copies = out.train[out.train["augmented"]]
    # row 0's copy leaks the test text, rows 2 and 3 swap into each other (duplicates): nothing new but no leak
    assert section["dropped_leaking"] == 1 and section["dropped_duplicate"] == 2 and len(copies) == 0
    train.loc[3, "text"] = "He is sad"
    out, section = counterfactual_augment(recipe, PreparedData(train, frame([], "v"), test, data.labels, [], {}))
    copies = out.train[out.train["augmented"]]
    assert sorted(copies["text"]) == ["He is happy", "She is sad"] and section["rows_added"] == 2
    assert list(copies["origin"]) == ["train.csv#2", "train.csv#3"] and len(out.test) == 1


# ------------------------------------------------------------------------------------------------ runs


def _named_rows(n: int, seed: int, skew: float) -> list[dict[str, str]]:
    """Texts "<name> said <pronoun> found the <noun> <adjective>": the adjective decides the label; in training
    the gender (name and pronoun) agrees with the label in ``skew`` of the rows, a planted term-label correlation.
    Names from the EEC lists, so gender and race are both named (race_names, gender_names)."""
    import random

    from tailorlm.fairness.families import resolve_family
    from tests.conftest import NEGATIVE, NOUNS, POSITIVE

    pairs = resolve_family("race_names")["pairs"]
    pool = {("male", "white"): [a for a, _ in pairs[:10]], ("male", "black"): [b for _, b in pairs[:10]],
            ("female", "white"): [a for a, _ in pairs[10:]], ("female", "black"): [b for _, b in pairs[10:]]}
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        agrees = rng.random() < skew
        gender = "male" if (label == "positive") == agrees else "female"
        race = rng.choice(["white", "black"])
        adjective = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        rows.append({"text": f"{rng.choice(pool[(gender, race)])} said {'he' if gender == 'male' else 'she'} found "
                             f"the {rng.choice(NOUNS)} {adjective}", "label": label, "gender": gender, "race": race})
    return rows


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir) -> dict:
    """The same recipe trained without and with counterfactual augmentation on data with a planted correlation."""
    import json

    import yaml

    from tests.helpers import run_cli

    work = tmp_path_factory.mktemp("planted")
    pd.DataFrame(_named_rows(140, 1, 0.9)).to_csv(work / "train.csv", index=False)
    pd.DataFrame(_named_rows(60, 2, 0.5)).to_csv(work / "test.csv", index=False)
    runs = {}
    for name, mitigation in (("plain", "none"), ("cda", "counterfactual_augment")):
        recipe = work / f"{name}.yaml"
        recipe.write_text(yaml.safe_dump({
            "output_dir": str(work / name), "model": {"name": str(tiny_model_dir)},
            "data": {"train": str(work / "train.csv"), "test": str(work / "test.csv"), "split": {"validation": 0.2}},
            "training": {"epochs": 6, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0,
                         "early_stopping_patience": None},
            "baseline": {"zero_shot": False, "linear_probe": False},
            "fairness": {"group_column": ["gender", "race"], "counterfactual": ["gender_names", "race_names"],
                         "min_group_size": 5, "mitigation": mitigation, "postprocess": "demographic_parity"}}))
        code, _, stderr = run_cli(["run", str(recipe)])
        assert code == 0, stderr
        runs[name] = work / name
        runs[f"{name}_metrics"] = json.loads((work / name / "metrics.json").read_text())
    runs["work"] = work
    return runs


def test_counterfactual_augmentation_lowers_the_flip_rate_at_no_accuracy_cost(planted_runs: dict) -> None:
    plain, cda = planted_runs["plain_metrics"], planted_runs["cda_metrics"]

    def flips(metrics: dict) -> float:
        return {f["pairs"]: f for f in metrics["fairness"]["counterfactual_families"]}["gender_names"]["flip_rate"]

    assert flips(plain) > 0.15, flips(plain)  # the plain model learned the planted gender shortcut
    assert flips(cda) < flips(plain) / 2
    assert cda["tuned"]["accuracy"] >= plain["tuned"]["accuracy"] - 0.01  # at most 1 point of clean accuracy
    mitigation = cda["fairness"]["mitigation"]
    assert mitigation["method"] == "counterfactual_augment" and mitigation["rows_added"] > 100
    assert "Counterfactual data augmentation" in (planted_runs["cda"] / "report.md").read_text()
    from tests.helpers import run_cli

    out = planted_runs["work"] / "compare"
    code, _, stderr = run_cli(["compare", str(planted_runs["plain"]), str(planted_runs["cda"]), "--out", str(out)])
    assert code == 0, stderr
    table = (out / "compare.md").read_text()  # the cost in accuracy beside the flip rate it removed, one table
    assert "fairness flip rate (gender_names)" in table and "fairness accuracy gap (gender × race)" in table
    assert "test accuracy" in table and "fairness.mitigation" in table


def test_run_report_shows_families_intersections_representation_and_postprocessing(planted_runs: dict) -> None:
    fair = planted_runs["plain_metrics"]["fairness"]
    assert [g["group_column"] for g in fair["groupings"]] == ["gender", "race", "gender × race"]
    assert {f["pairs"] for f in fair["counterfactual_families"]} == {"gender_names", "race_names"}
    assert all(f["rows_swapped"] == f["n"] == fair["n"] for f in fair["counterfactual_families"])
    train = fair["representation"]["splits"]["train"]
    assert train["groups"]["gender"]["male"]["labels"]["positive"] > 0.8  # the planted skew, seen before training
    assert set(fair["representation"]["splits"]) == {"train", "validation", "test"}
    post = fair["postprocess"]
    assert post["method"] == "ThresholdOptimizer"
    if "skipped" not in post:  # a skewed validation split can leave a group with one label: then it says so
        assert set(post["unmitigated"]) == set(post["mitigated"]) and post["applied_at_predict"] is True
    else:
        assert "each with both labels" in post["skipped"]
    md = (planted_runs["plain"] / "report.md").read_text()
    for heading in ("By group ('gender × race')", "Counterfactual swaps: race_names", "Representation of the data",
                    "ThresholdOptimizer"):
        assert heading.replace("_", "\\_") in md or heading in md, heading


def test_tailor_audit_takes_several_group_columns_and_families(planted_runs: dict) -> None:
    import json

    from tests.helpers import run_cli

    out = planted_runs["work"] / "audit.json"
    code, stdout, stderr = run_cli(["audit", str(planted_runs["plain"]), "--data", str(planted_runs["work"] /
                                    "test.csv"), "--group-column", "gender", "--group-column", "race",
                                    "--counterfactual", "gender_names,race_names", "--min-group-size", "5",
                                    "--out", str(out)])
    assert code == 0, stderr
    assert "by gender × race" in stdout and "counterfactual race_names (race)" in stdout
    audit = json.loads(out.read_text())
    assert len(audit["groupings"]) == 3 and audit["representation"]["splits"]["file"]["rows"] == audit["n"]
    code, _, stderr = run_cli(["audit", str(planted_runs["plain"]), "--data", str(planted_runs["work"] / "test.csv"),
                               "--group-column", "gender", "--counterfactual", "races"])
    assert code == 2 and "--counterfactual: unknown family 'races'" in stderr and stderr.strip().count("\n") == 0
