"""training.*: auto resolves from the data and the model, says why, and a rerun of the same recipe still matches."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tailorlm.recipe import dump_recipe, recipe_from_dict
from tailorlm.train import auto
from tailorlm.train.resume import recipe_differences


def test_small_sets_get_a_minimum_of_optimizer_steps_large_sets_fewer_epochs() -> None:
    small = auto.choose_epochs(300, auto.optimizer_steps_per_epoch(300, 16, 1))
    assert small.value == 16 and "300 optimizer steps" in small.reason  # 19 steps per epoch x 16 epochs
    tiny = auto.choose_epochs(40, auto.optimizer_steps_per_epoch(40, 16, 1))
    assert tiny.value == auto.MAX_EPOCHS and "capped" in tiny.reason
    assert auto.choose_epochs(10_000, auto.optimizer_steps_per_epoch(10_000, 32, 1)).value == 3
    assert auto.choose_epochs(60_000, auto.optimizer_steps_per_epoch(60_000, 32, 1)).value == 2
    assert auto.choose_epochs(500_000, auto.optimizer_steps_per_epoch(500_000, 32, 1)).value == 1
    # a causal LM on a few hundred texts: a few passes, not MIN_STEPS worth
    assert auto.choose_epochs(300, auto.optimizer_steps_per_epoch(300, 16, 1), "generation").value == 3


def test_a_run_of_a_few_steps_gets_no_warmup() -> None:
    assert auto.choose_warmup(1).value == 0.0  # 1 warm-up step of 1 would train at rate 0
    assert auto.choose_warmup(300).value == auto.WARMUP_RATIO
    recipe = recipe_from_dict({"training": {"epochs": 1, "batch_size": 32}})
    assert auto.resolve_data_dependent(recipe, 32)["training.warmup"].value == 0.0


def test_the_rate_follows_size_head_and_lora() -> None:
    assert auto.choose_learning_rate("classification", 22_000_000, lora=False).value == 1e-4
    assert auto.choose_learning_rate("classification", 110_000_000, lora=False).value == 5e-5
    assert auto.choose_learning_rate("token-classification", 22_000_000, lora=False).value == 3e-4
    lora = auto.choose_learning_rate("generation", 135_000_000, lora=True)
    assert lora.value == 5e-4 and "LoRA" in lora.reason
    assert auto.choose_learning_rate("qa", 22_000_000, lora=True).value == auto.LORA_MAX_RATE


def test_resolution_fills_only_auto_keys() -> None:
    recipe = recipe_from_dict({"training": {"epochs": 2}})
    chosen = auto.resolve_data_dependent(recipe, 300)
    assert recipe.training.epochs == 2 and "training.epochs" not in chosen
    assert recipe.training.batch_size == 16 and recipe.training.warmup == auto.WARMUP_RATIO
    assert set(chosen) == {"training.batch_size", "training.warmup"}


def test_a_resumed_auto_recipe_matches_the_stored_concrete_values() -> None:
    given = recipe_from_dict({"training": {"learning_rate": 3e-4}})
    resolved = given.model_copy(deep=True)
    chosen = auto.resolve_data_dependent(resolved, 300)
    stored = dump_recipe(resolved)
    assert recipe_differences(stored, given) == ["training.batch_size", "training.epochs", "training.warmup"]
    assert recipe_differences(stored, given, frozenset(chosen)) == []
    # an explicit value that differs from what auto chose is a real difference
    changed = recipe_from_dict({"training": {"learning_rate": 3e-4, "epochs": 2}})
    assert recipe_differences(stored, changed, frozenset(chosen)) == ["training.epochs"]


def test_a_run_records_what_auto_chose(tiny_recipe: Path) -> None:
    from rich.console import Console

    from tailorlm.recipe import load_recipe
    from tailorlm.run import run

    recipe = load_recipe(tiny_recipe, ["training.epochs=auto", "training.learning_rate=auto",
                                       "training.batch_size=auto", "training.warmup=auto"])
    metrics = run(recipe, Console(quiet=True))
    chosen = metrics["auto"]
    assert set(chosen) == {"training.epochs", "training.learning_rate", "training.batch_size", "training.warmup"}
    assert chosen["training.batch_size"]["value"] == 16
    steps = auto.optimizer_steps_per_epoch(metrics["data"]["train"], 16, 1)
    assert chosen["training.epochs"]["value"] == min(auto.MAX_EPOCHS, -(-auto.MIN_STEPS // steps))
    assert metrics["train"]["global_step"] == steps * chosen["training.epochs"]["value"]  # no early stopping here
    run_dir = Path(recipe.output_dir)
    text = (run_dir / "recipe.resolved.yaml").read_text()
    assert text.startswith("# training.batch_size: auto -> 16")
    resolved = yaml.safe_load(text)["training"]
    assert resolved["learning_rate"] == chosen["training.learning_rate"]["value"]
    assert json.loads((run_dir / "auto.json").read_text()) == chosen
