"""The recipe: defaults, --set overrides, and one-line errors that point at the key and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tailorlm.errors import RecipeError
from tailorlm.recipe import all_keys, dump_recipe, load_recipe, recipe_from_dict


def test_defaults_are_valid_and_round_trip(tmp_path: Path) -> None:
    recipe = load_recipe(None)
    assert recipe.task == "classification"
    assert recipe.model.name is None  # the task picks its default model (minilm for classification)
    file = tmp_path / "r.yaml"
    file.write_text(dump_recipe(recipe))
    assert load_recipe(file) == recipe


def test_set_overrides_any_key_with_yaml_values(tmp_path: Path) -> None:
    file = tmp_path / "r.yaml"
    file.write_text("training:\n  epochs: 3\n")
    recipe = load_recipe(
        file,
        [
            "training.epochs=2",
            "model.peft.method=lora",
            "model.peft.target_modules=[query, value]",
            "output_dir=runs/x",
            "training.learning_rate=3e-5",
            "data.label_descriptions={a: first, b: second}",
        ],
    )
    assert recipe.training.epochs == 2
    assert recipe.model.peft.method == "lora"
    assert recipe.model.peft.target_modules == ["query", "value"]
    assert recipe.output_dir == "runs/x"
    assert recipe.training.learning_rate == pytest.approx(3e-5)
    assert recipe.data.label_descriptions == {"a": "first", "b": "second"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"training": {"epoch": 2}}, "unknown recipe key 'training.epoch'; did you mean 'training.epochs'?"),
        ({"modle": {"name": "x"}}, "did you mean 'model' (model.name)?"),
        ({"data": {"text_col": "t"}}, "did you mean 'data.text_column'?"),
        ({"training": {"epochs": "many"}}, "key 'training.epochs'"),
        ({"model": {"peft": {"method": "qlora"}}}, "key 'model.peft.method'"),
        ({"training": {"learning_rate": -1}}, "key 'training.learning_rate'"),
    ],
)
def test_errors_name_the_key(raw: dict, expected: str) -> None:
    with pytest.raises(RecipeError) as info:
        recipe_from_dict(raw, "r.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_bad_yaml_names_file_and_line(tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text("training:\n  epochs: 2\n   batch_size: [1\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: line \d+, column \d+ invalid YAML"):
        load_recipe(file)


def test_missing_recipe_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    file = tmp_path / "list.yaml"
    file.write_text("- a\n- b\n")
    with pytest.raises(RecipeError, match="must be a mapping"):
        load_recipe(file)


def test_set_without_equals_and_into_a_value() -> None:
    with pytest.raises(RecipeError, match="expected key=value"):
        load_recipe(None, ["training.epochs"])
    with pytest.raises(RecipeError, match="'output_dir' is a value, not a section"):
        load_recipe(None, ["output_dir=runs/a", "output_dir.name=x"])


def test_all_keys_lists_nested_keys() -> None:
    keys = all_keys()
    assert "training.early_stopping_patience" in keys
    assert "model.peft.r" in keys
    assert "data.clean.drop_near_duplicates" in keys
