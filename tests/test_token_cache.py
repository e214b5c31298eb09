"""The tokenisation cache: a second run on the same rows and tokenizer reuses the encoded splits, and only then."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from transformers import AutoTokenizer

from tailorlm.data.token_cache import cache_key, encode_with_cache, tokenized_root
from tailorlm.demos.qa import generate_qa_dataset
from tailorlm.demos.translation import generate_demo_mt
from tailorlm.recipe import recipe_from_dict
from tailorlm.tasks import get_task

from .helpers import run_cli


def _recipe(task: str, model: Path, data: dict[str, Any], **training: Any) -> Any:
    return recipe_from_dict({"task": task, "model": {"name": str(model)}, "data": data,
                             "training": {"max_length": 64, **training}}, "test")


def _encode_twice(recipe: Any, tokenizer: Any) -> tuple[list[tuple[Any, str]], list[Any]]:
    """Prepare and encode the recipe's data twice, each time from scratch, as two runs would."""
    results, datas = [], []
    for _ in range(2):
        task = get_task(recipe.task)
        data = task.prepare_data(recipe, None)
        results.append(encode_with_cache(task, recipe, data, tokenizer))
        datas.append(data)
    return results, datas


def _same_dataset(a: Any, b: Any) -> bool:
    return a.column_names == b.column_names and a.to_dict() == b.to_dict()


@pytest.fixture()
def tokenizer(tiny_model_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_qa_second_encoding_is_a_hit_with_the_same_windows_and_stride(tmp_path: Path, tiny_model_dir: Path,
                                                                        tokenizer: Any) -> None:
    paths = generate_qa_dataset(tmp_path / "qa", seed=3, n_passages=8)
    recipe = _recipe("qa", tiny_model_dir, {k: str(v) for k, v in paths.items()})
    (first, first_status), (second, second_status) = _encode_twice(recipe, tokenizer)[0]
    assert (first_status, second_status) == ("miss", "hit")
    assert _same_dataset(first.train, second.train) and _same_dataset(first.validation, second.validation)
    assert first.max_length == second.max_length and first.stats == second.stats


def test_cached_encoding_leaves_the_data_as_a_fresh_one_would(tmp_path: Path, tiny_model_dir: Path,
                                                              tokenizer: Any) -> None:
    """after_encode replays what encode decided: QA's stride, translation's target length."""
    qa_paths = generate_qa_dataset(tmp_path / "qa", seed=5, n_passages=8)
    qa = _recipe("qa", tiny_model_dir, {k: str(v) for k, v in qa_paths.items()})
    results, datas = _encode_twice(qa, tokenizer)
    assert [status for _, status in results] == ["miss", "hit"]
    assert datas[0].settings == datas[1].settings and "doc_stride" in datas[1].settings

    mt_paths = generate_demo_mt(tmp_path / "mt", n_rows=60)
    mt = _recipe("translation", tiny_model_dir, {k: str(v) for k, v in mt_paths.items()})
    results, mt_datas = _encode_twice(mt, tokenizer)
    assert [status for _, status in results] == ["miss", "hit"]
    assert mt_datas[0].meta["target_max_length"] == mt_datas[1].meta["target_max_length"] > 0


def test_key_ignores_training_settings_but_not_tokens(tmp_path: Path, tiny_model_dir: Path, tokenizer: Any) -> None:
    frame = pd.DataFrame({"text": ["the bill was late", "lovely engineer"], "label": ["neg", "pos"]})
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    data_cfg = {"train": str(path), "split": {"validation": 0.0, "test": 0.0}}
    task = get_task("classification")

    class Data:  # the attributes a key reads, without running the cleaner
        train, validation, test, labels = frame, frame.iloc[:0], frame.iloc[:0], ["neg", "pos"]

    def key(data: Any = Data, tok: Any = tokenizer, **training: Any) -> str:
        return cache_key(task.name, _recipe("classification", tiny_model_dir, data_cfg, **training), data, tok)

    base = key()
    assert key(learning_rate=1e-3, seed=7, epochs=9, batch_size=2) == base  # a tuning trial's changes: a hit
    assert key(max_length=32) != base  # truncation changes tokens

    class Edited(Data):
        train = frame.assign(text=["the bill was early", "lovely engineer"])

    assert key(Edited) != base
    lowercase_off = AutoTokenizer.from_pretrained(tiny_model_dir, do_lower_case=False)
    assert key(tok=lowercase_off) != base


def test_tailor_run_twice_hits_the_cache_and_trains_the_same(tmp_path: Path, tiny_recipe: Path) -> None:
    outcomes = []
    for name in ("first", "second"):
        code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", f"output_dir={tmp_path / name}"])
        assert code == 0, stderr
        outcomes.append(json.loads((tmp_path / name / "metrics.json").read_text()))
    assert [m["data"]["tokenize_cache"] for m in outcomes] == ["miss", "hit"]
    assert outcomes[0]["tuned"] == outcomes[1]["tuned"]  # same rows, same tokens, same seed: the same model
    assert outcomes[0]["train"]["global_step"] == outcomes[1]["train"]["global_step"]
    assert any(tokenized_root().iterdir())

    code, _, stderr = run_cli(["run", str(tiny_recipe), "--set", f"output_dir={tmp_path / 'off'}",
                               "--set", "data.cache_tokenized=false"])
    assert code == 0, stderr
    off = json.loads((tmp_path / "off" / "metrics.json").read_text())
    assert off["data"]["tokenize_cache"] == "off" and off["tuned"] == outcomes[0]["tuned"]
