"""Safe loading and guards: no code from model folders, no pickle, output_dir rules, disk and GPU memory."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import sentiment_rows
from tests.helpers import run_cli

EVIL = """
from pathlib import Path
Path({marker!r}).write_text("remote code ran")
"""


@pytest.fixture()
def evil_model(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """The tiny model plus custom modules (auto_map) that, if imported, write a marker file."""
    folder = tmp_path / "evil-model"
    shutil.copytree(tiny_model_dir, folder)
    marker = tmp_path / "MARKER"
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel",
                          "AutoModelForSequenceClassification": "modeling_evil.EvilForSequenceClassification"}
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("modeling_evil.py", "configuration_evil.py"):
        (folder / name).write_text(EVIL.format(marker=str(marker)))
    return folder, marker


def write_recipe(tmp_path: Path, model: Path, *extra: str) -> Path:
    data = tmp_path / "data" / "reviews.csv"
    data.parent.mkdir(exist_ok=True)
    pd.DataFrame(sentiment_rows(40)).to_csv(data, index=False)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("\n".join([
        f"output_dir: {tmp_path / 'out'}", "model:", f"  name: {model}", "data:", f"  train: {data}",
        "training:", "  epochs: 1", "baseline:", "  zero_shot: false", "  linear_probe: false", *extra,
    ]) + "\n")
    return recipe


def test_model_with_custom_code_is_refused_and_nothing_runs(tmp_path: Path, evil_model: tuple[Path, Path]) -> None:
    folder, marker = evil_model
    code, _, err = run_cli(["run", str(write_recipe(tmp_path, folder))])
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "modeling_evil.py" in errors[0] and "model.trust_remote_code" in errors[0]
    assert "Traceback" not in err
    assert not marker.exists()
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["status"] == "failed"


def test_transformers_alone_does_not_run_it_either(evil_model: tuple[Path, Path]) -> None:
    """Defence in depth: even past our check, transformers with trust_remote_code=False imports nothing."""
    from transformers import AutoConfig

    folder, marker = evil_model
    with contextlib.suppress(ValueError):
        AutoConfig.from_pretrained(folder, trust_remote_code=False)
    assert not marker.exists()


def test_trust_remote_code_warns(tiny_model_dir: Path) -> None:
    from tailorlm.models.loading import _common_kwargs
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import ModelConfig

    with pytest.warns(UserWarning, match="trust_remote_code is true"):
        kwargs = _common_kwargs(resolve_model(str(tiny_model_dir)), ModelConfig(trust_remote_code=True))
    assert kwargs["trust_remote_code"] is True
    assert _common_kwargs(resolve_model(str(tiny_model_dir)), ModelConfig())["trust_remote_code"] is False


def test_pickle_weights_need_allow_pickle(tmp_path: Path, tiny_model_dir: Path) -> None:
    from tailorlm.errors import ModelError
    from tailorlm.models.registry import resolve_model

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelError, match="allow_pickle"):
        resolve_model(str(folder))
    assert resolve_model(str(folder), allow_pickle=True).is_local


def test_loading_passes_use_safetensors(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tailorlm.models.loading import load_pretrained
    from tailorlm.models.registry import resolve_model
    from tailorlm.recipe import ModelConfig

    seen = {}

    class Factory:
        __name__ = "AutoModel"

        @staticmethod
        def from_pretrained(source: str, **kwargs: object) -> str:
            seen.update(kwargs)
            return "ok"

    load_pretrained(Factory, resolve_model(str(tiny_model_dir)), ModelConfig())
    assert seen["use_safetensors"] is True and seen["trust_remote_code"] is False
    seen.clear()
    load_pretrained(Factory, resolve_model(str(tiny_model_dir)), ModelConfig(allow_pickle=True))
    assert "use_safetensors" not in seen


def test_no_dataset_loading_scripts_anywhere() -> None:
    """datasets' load_dataset can run a repository's loading script; tailorlm reads files itself. (load_from_disk,
    which only reads Arrow files and their JSON state, serves the tokenisation cache tailorlm wrote itself.)"""
    source = Path(__file__).resolve().parents[1] / "src" / "tailorlm"
    calls = re.compile(r"\b(load_dataset|load_dataset_builder)\s*\(")
    offenders = [str(p) for p in source.rglob("*.py") if calls.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


@pytest.mark.parametrize("where", ["root", "home", "data_folder", "parent_of_data"])
def test_output_dir_rules(tmp_path: Path, where: str) -> None:
    from tailorlm.errors import RecipeError
    from tailorlm.recipe import Recipe
    from tailorlm.safety import check_output_dir

    data = tmp_path / "project" / "data" / "train.csv"
    out = {"root": "/", "home": str(Path.home()), "data_folder": str(data.parent),
           "parent_of_data": str(tmp_path / "project")}[where]
    recipe = Recipe.model_validate({"output_dir": out, "data": {"train": str(data)}})
    with pytest.raises(RecipeError, match="output_dir"):
        check_output_dir(recipe)
    ok = Recipe.model_validate({"output_dir": str(tmp_path / "runs" / "a"), "data": {"train": str(data)}})
    assert check_output_dir(ok) == (tmp_path / "runs" / "a").resolve()


def test_output_dir_over_the_data_is_refused_by_the_cli(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = write_recipe(tmp_path, tiny_model_dir)
    code, _, err = run_cli(["run", str(recipe), "--set", f"output_dir={tmp_path / 'data'}"])
    assert code == 2 and "lies inside output_dir" in err
    assert not (tmp_path / "data" / "status.json").exists()


def test_low_disk_fails_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from tailorlm import safety
    from tailorlm.errors import UserError

    model = torch.nn.Linear(1000, 1000)  # 4 MB of weights
    need = safety.training_disk_need(model, full_checkpoints=True, keep=1)
    assert need >= 3 * 3 * safety.model_bytes(model)  # 3 checkpoints with AdamW state
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(safety.shutil, "disk_usage", lambda path: usage(10**9, 10**9, 1000))
    with pytest.raises(UserError, match="not enough free disk"):
        safety.check_free_disk(tmp_path / "run" / "checkpoints", need, "checkpoints")


def test_gpu_out_of_memory_becomes_a_user_error(tmp_path: Path) -> None:
    import torch

    from tailorlm.errors import UserError
    from tailorlm.recipe import Recipe
    from tailorlm.train.resume import train_guarded

    class Exploding:
        def train(self, **kwargs: object) -> None:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    recipe = Recipe.model_validate({"training": {"batch_size": 32}})
    with pytest.raises(UserError, match=r"training.batch_size=16.*gradient_accumulation=2.*gradient_checkpointing"):
        train_guarded(Exploding(), recipe, torch.nn.Linear(2, 2), tmp_path / "checkpoints", None)  # type: ignore[arg-type]
