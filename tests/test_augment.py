"""The augment stage (issue 14, acceptance 4): token edits are seeded, augmented rows never copy a validation or
test text (also inside every k-fold fold, since augmentation runs after reshape), copies follow their originals,
the gate keeps the plain model when augmentation only adds noise, and a missing word list is one line."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.conftest import NEGATIVE, NOUNS, POSITIVE
from tests.helpers import run_cli
from tests.test_bad_input import assert_one_line_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synonyms_csv(tmp_path: Path) -> Path:
    """Every positive adjective a synonym of every other (the same for negatives): replacing one word of a row
    often recreates another row of the data set, some of which are validation or test rows."""
    path = tmp_path / "synonyms.csv"
    pairs = [(a, b) for words in (POSITIVE, NEGATIVE) for a in words for b in words if a < b]
    pd.DataFrame(pairs, columns=["word", "synonym"]).to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------ eda


def test_eda_edits_are_seeded_and_do_what_they_say() -> None:
    from tailorlm.augment import eda

    words = ["the", "bill", "was", "late", "and", "the", "app", "was", "slow"]
    synonyms = {"late": ["delayed"], "slow": ["sluggish"]}
    runs = [[eda.eda_copy(" ".join(words), 0.3, synonyms, random.Random(7)) for _ in range(3)] for _ in range(2)]
    assert runs[0] == runs[1]
    rng = random.Random(0)
    replaced = eda.synonym_replacement(words, 2, synonyms, rng)
    assert replaced != words and {"delayed", "sluggish"} & set(replaced) and len(replaced) == len(words)
    inserted = eda.random_insertion(words, 2, synonyms, rng)
    assert len(inserted) == len(words) + 2 and set(inserted) - set(words) <= {"delayed", "sluggish"}
    swapped = eda.random_swap(words, 1, rng)
    assert sorted(swapped) == sorted(words) and swapped != words
    assert eda.random_deletion(words, 0.0, rng) == words
    assert len(eda.random_deletion(words, 1.0, rng)) == 1  # never an empty text
    assert eda.available({}) == ("random_swap", "random_deletion")
    assert eda.edit_count(10, 0.1) == 1 and eda.edit_count(3, 0.1) == 1 and eda.edit_count(20, 0.25) == 5


# ------------------------------------------------------------------------------------------ leak-free copies


def _stages_through_augment(recipe: Any, reshape: Any = None) -> Any:
    """The run's stages up to augment (no training), so the augmented splits can be inspected."""
    from rich.console import Console

    from tailorlm.run import STAGES
    from tailorlm.rundir import RunDir
    from tailorlm.stages.context import RunContext
    from tailorlm.stages.runner import run_stages

    names = [s.name for s in STAGES]
    # a fold's copies stay on its training side; adapt.pretrain's body (mlm's default) exists; nothing is encoded
    assert names.index("reshape") < names.index("augment") and names.index("adapt") < names.index("augment")
    assert names.index("augment") < min(names.index("auto_data"), names.index("tokenize"))
    ctx = RunContext(recipe, Console(stderr=True, quiet=True), RunDir.create(recipe.output_dir), reshape=reshape)
    run_stages(STAGES[: names.index("augment") + 1], ctx)
    return ctx


def _check_no_leak(ctx: Any) -> dict:
    from tailorlm.adapt.corpus import fingerprints
    from tailorlm.augment.stage import origin_ids
    from tailorlm.data.clean import clean_text, fingerprint

    train = ctx.data.train
    copies, originals = train[train["augmented"]], train[~train["augmented"]]
    held_out = fingerprints((ctx.data.validation, ctx.data.test), ctx.recipe.data.clean)
    assert len(copies) > 0
    assert not {fingerprint(clean_text(t, ctx.recipe.data.clean)) for t in copies["text"]} & held_out
    assert set(copies["origin"]) <= set(originals["origin"])  # every copy's original is a training row
    assert not set(copies["origin"]) & set(origin_ids(ctx.data.validation))
    by_origin = dict(zip(originals["origin"], originals["label"], strict=True))
    assert all(by_origin[o] == label for o, label in zip(copies["origin"], copies["label"], strict=True))
    return ctx.metrics


def test_no_augmented_row_copies_a_validation_or_test_text(tiny_recipe: Path, tmp_path: Path) -> None:
    from tailorlm.recipe import load_recipe

    recipe = load_recipe(tiny_recipe, ["augment.method=eda", f"augment.synonyms={synonyms_csv(tmp_path)}",
                                       "augment.copies=4", "augment.max_share=4", "augment.gate=false"])
    ctx = _stages_through_augment(recipe)
    section = _check_no_leak(ctx)["augment"]
    assert section["dropped_leaking"] > 0  # the word list did recreate held-out texts; they were dropped
    assert section["rows_added"] == int(ctx.data.train["augmented"].sum())
    assert section["train_rows_after"] == section["train_rows_before"] + section["rows_added"]
    lines = (Path(recipe.output_dir) / "augmented.jsonl").read_text().splitlines()
    assert len(lines) == int(ctx.data.train["augmented"].sum())
    assert set(json.loads(lines[0])) == {"text", "label", "origin"}
    report = json.loads((Path(recipe.output_dir) / "data_report.json").read_text())
    assert report["augment"] == section and "label_distribution" in report  # added to, not replaced


def test_kfold_copies_follow_their_fold_and_never_copy_its_validation(tiny_recipe: Path, tmp_path: Path) -> None:
    from tailorlm.recipe import load_recipe
    from tailorlm.tune.cv import assign_folds, fold_data, pool_of

    recipe = load_recipe(tiny_recipe, ["augment.method=eda", f"augment.synonyms={synonyms_csv(tmp_path)}",
                                       "augment.copies=4", "augment.max_share=4", "augment.gate=false"])
    dropped = 0
    for k in range(2):
        def fold(data: Any, k: int = k) -> Any:
            pool = pool_of(data)
            return fold_data(data, pool, assign_folds(pool, 2, True, recipe.training.seed)[k])

        recipe.output_dir = str(tmp_path / f"fold-{k}")
        ctx = _stages_through_augment(recipe, reshape=fold)
        dropped += _check_no_leak(ctx)["augment"]["dropped_leaking"]
    assert dropped > 0  # the constructed word list does recreate held-out texts, and they were dropped


# ------------------------------------------------------------------------------------------ the gate


def test_gate_decisions() -> None:
    from tailorlm.augment.gate import decide, noise

    def m(score: float) -> dict:
        return {"validation": {"accuracy": score, "loss": 1 - score}, "data": {"validation": 100}}

    assert noise(0.8, 100) == pytest.approx(0.04)
    assert decide(m(0.95), m(0.80), "accuracy", 0.0)["kept"] == "augmented"
    kept = decide(m(0.82), m(0.80), "accuracy", 0.0)  # +0.02 is inside the 0.04 noise
    assert kept["kept"] == "plain" and "noise margin 0.0400" in kept["reason"]
    assert decide(m(0.80), m(0.80), "accuracy", 0.0)["kept"] == "plain"
    assert decide(m(0.95), m(0.80), "accuracy", 0.2)["kept"] == "plain"  # min_gain on top of the noise
    assert decide(m(0.95), m(0.80), "loss", 0.0)["kept"] == "augmented"  # a lower loss wins
    assert decide({}, m(0.8), "accuracy", 0.0)["kept"] == "plain"
    # with a paired bootstrap over validation predictions, the interval's lower end decides
    paired = {"difference": 0.05, "low": 0.01, "high": 0.09, "level": 0.95}
    kept = decide(m(0.85), m(0.80), "accuracy", 0.0, paired)
    assert kept["kept"] == "augmented" and kept["noise"] == "paired bootstrap over validation predictions"
    assert decide(m(0.85), m(0.80), "accuracy", 0.02, paired)["kept"] == "plain"  # not above min_gain
    noisy = decide(m(0.85), m(0.80), "accuracy", 0.0, paired | {"low": -0.01})
    assert noisy["kept"] == "plain" and "within the noise" in noisy["reason"]
    assert decide(m(0.85), m(0.80), "loss", 0.0, {"difference": -0.05, "low": -0.09, "high": -0.01,
                                                   "level": 0.95})["kept"] == "augmented"


def test_gate_keeps_the_plain_model_when_augmentation_only_adds_noise(tiny_recipe: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import tailorlm.augment.eda as eda

    vocabulary = POSITIVE + NEGATIVE + NOUNS

    def noise_only(text: str, alpha: float, synonyms: dict, rng: random.Random) -> tuple[str, str]:
        return " ".join(rng.choice(vocabulary) for _ in range(6)), "noise"

    monkeypatch.setattr(eda, "eda_copy", noise_only)
    out = tiny_recipe.parent / "run"
    learnable = ["training.epochs=6", "training.learning_rate=5e-3", "training.warmup=0.0",
                 "baseline.linear_probe=false"]
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=eda", "--set",
                               "augment.max_share=2", "--set", "augment.copies=2",
                               *[arg for key in learnable for arg in ("--set", key)]])
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    gate = metrics["augment"]["gate"]
    assert gate["kept"] == "plain", gate
    assert gate["noise"] == "paired bootstrap over validation predictions" and gate["metric"] == "f1_macro"
    print(json.dumps(gate))
    assert gate["plain"] > 0.6  # the plain model learned: the gate compared two real models
    assert metrics["augment"]["rows_added"] > 0 and "kept the plain model" in gate["reason"]
    plain = json.loads((out / "augment-off" / "metrics.json").read_text())
    assert metrics["tuned"] == plain["tuned"]  # output_dir now holds the plain run's results
    weights = (out / "model" / "model.safetensors").read_bytes()
    assert weights == (out / "augment-off" / "model" / "model.safetensors").read_bytes()
    assert (out / "augment-on" / "model").is_dir()  # the augmented model is kept aside, not lost
    page, markdown = (out / "report.html").read_text(), (out / "report.md").read_text()
    assert "<h3>Augmentation</h3>" in page and "### Augmentation" in markdown
    assert "without augmentation too and kept the plain model" in markdown  # the report says which and why


# ------------------------------------------------------------------------------------------ bad input


def test_missing_synonyms_file_is_one_line_naming_the_key(tiny_recipe: Path, tmp_path: Path) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=eda", "--set",
                               f"augment.synonyms={tmp_path / 'nope.csv'}"])
    assert_one_line_error(code, stderr, "augment.synonyms", "file not found")


def test_augment_refuses_what_it_cannot_do(tiny_recipe: Path) -> None:
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=eda", "--set",
                               "validation.kfold=2"])
    assert_one_line_error(code, stderr, "augment.gate")
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "task=generation", "--set", "augment.method=eda"])
    assert_one_line_error(code, stderr, "augment.method")
    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=backtranslate"])
    assert_one_line_error(code, stderr, "augment.method")


def test_unreadable_or_empty_synonyms_file_is_one_line(tiny_recipe: Path, tmp_path: Path) -> None:
    binary, empty = tmp_path / "binary.csv", tmp_path / "empty.csv"
    binary.write_bytes(b"\xff\xfe\x00word,\x99\n")
    empty.write_text("word,synonym\n")
    for path, needle in ((binary, "not a readable UTF-8"), (empty, "no word,synonym pairs")):
        code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", "augment.method=eda", "--set",
                                   f"augment.synonyms={path}"])
        assert_one_line_error(code, stderr, "augment.synonyms", needle)
