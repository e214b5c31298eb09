"""Every bad input a user can make: exit code 2, one line on stderr naming the file/row/key, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import sentiment_rows
from tests.helpers import run_cli


def recipe_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def assert_one_line_error(code: int, stderr: str, *needles: str) -> None:
    """Exit 2; exactly one error line, the last thing printed (progress lines may precede it); no traceback."""
    assert code == 2, stderr
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


@pytest.fixture()
def good_csv(tmp_path: Path) -> Path:
    path = tmp_path / "good.csv"
    pd.DataFrame(sentiment_rows(60)).to_csv(path, index=False)
    return path


def prepare_with(tmp_path: Path, model: Path, **data: str) -> tuple[int, str, str]:
    lines = "\n".join(f"  {k}: {v}" for k, v in data.items())
    recipe = recipe_file(tmp_path, f"output_dir: {tmp_path / 'out'}\nmodel:\n  name: {model}\ndata:\n{lines}\n")
    return run_cli(["prepare", str(recipe)])


def test_missing_data_file(tmp_path: Path, tiny_model_dir: Path) -> None:
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(tmp_path / "nope.csv"))
    assert_one_line_error(code, err, "nope.csv", "not found")


def test_missing_text_column_lists_columns(tmp_path: Path, tiny_model_dir: Path, good_csv: Path) -> None:
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(good_csv), text_column="review")
    assert_one_line_error(code, err, "good.csv", "'review'", "text, label")


def test_missing_label_column(tmp_path: Path, tiny_model_dir: Path, good_csv: Path) -> None:
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(good_csv), label_column="sentiment")
    assert_one_line_error(code, err, "good.csv", "'sentiment'")


def test_bad_encoding(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\n\xff\xfe caf\xe9 was great,positive\nok then,negative\n" * 3)
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(path))
    if code == 0:  # accepted with a fallback encoding: it must say so in the data report
        report = json.loads((tmp_path / "out" / "data_report.json").read_text())
        assert any("encoding" in w.lower() or "utf-8" in w.lower() for w in report["warnings"])
    else:
        assert_one_line_error(code, err, "latin.csv")


def test_malformed_rows_are_rejected_and_good_rows_kept(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = sentiment_rows(40)
    lines = ["text,label"] + [f'"{r["text"]}",{r["label"]}' for r in rows]
    lines.insert(5, '"an unterminated quote, positive, extra, fields')
    lines.insert(9, "too,many,fields,here")
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(path))
    assert code == 0, err
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert any(r["reason"] == "malformed_row" for r in rejects)
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert report["rows_kept"]["train"] + report["rows_kept"]["validation"] + report["rows_kept"]["test"] >= 30


def test_malformed_jsonl_line_rejected(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = [json.dumps(r) for r in sentiment_rows(40)]
    good.insert(3, "{not json")
    path.write_text("\n".join(good) + "\n")
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(path))
    assert code == 0, err
    rejects = [json.loads(x) for x in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejects if r["reason"] == "malformed_json"] == [4]


def test_no_usable_rows(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("text,label\n ,positive\n,negative\n   ,positive\n")
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(path))
    assert_one_line_error(code, err, "empty.csv", "no usable rows")


def test_single_class(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = tmp_path / "one.csv"
    pd.DataFrame([r for r in sentiment_rows(40) if r["label"] == "positive"]).to_csv(path, index=False)
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(path))
    assert_one_line_error(code, err, "one.csv", "one label")


def test_invalid_yaml(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, "data:\n  train: [a.csv\n")
    code, _, err = run_cli(["run", str(recipe)])
    assert_one_line_error(code, err, "recipe.yaml", "invalid YAML")


def test_unknown_key(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, "training:\n  epoch: 2\n")
    code, _, err = run_cli(["run", str(recipe)])
    assert_one_line_error(code, err, "training.epoch", "did you mean 'training.epochs'")


def test_wrong_type(tmp_path: Path) -> None:
    recipe = recipe_file(tmp_path, "training:\n  epochs: many\n")
    code, _, err = run_cli(["run", str(recipe)])
    assert_one_line_error(code, err, "training.epochs", "'many'")


def test_model_path_missing_and_empty(tmp_path: Path, good_csv: Path) -> None:
    code, _, err = prepare_with(tmp_path, tmp_path / "no_such_model", train=str(good_csv))
    assert_one_line_error(code, err, "no_such_model", "does not exist")
    empty = tmp_path / "empty_model"
    empty.mkdir()
    code, _, err = prepare_with(tmp_path, empty, train=str(good_csv))
    assert_one_line_error(code, err, "empty_model", "no config.json")


def test_pickle_only_model_refused(tmp_path: Path, good_csv: Path) -> None:
    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not really")
    code, _, err = prepare_with(tmp_path, folder, train=str(good_csv))
    assert_one_line_error(code, err, "pickle", "allow_pickle")


def test_lora_target_missing(tmp_path: Path, tiny_model_dir: Path, good_csv: Path) -> None:
    recipe = recipe_file(
        tmp_path,
        f"output_dir: {tmp_path / 'out'}\nmodel:\n  name: {tiny_model_dir}\n  peft:\n    method: lora\n"
        f"    target_modules: [q_proj]\ndata:\n  train: {good_csv}\n",
    )
    code, _, err = run_cli(["run", str(recipe)])
    assert_one_line_error(code, err, "q_proj", "query")


def test_real_process_prints_one_line_and_exit_2(tmp_path: Path) -> None:
    """The installed entry point, not just the function: no traceback reaches the terminal."""
    recipe = recipe_file(tmp_path, "training:\n  epochs: many\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tailorlm", "run", str(recipe)], capture_output=True, text=True, timeout=120
    )
    assert_one_line_error(proc.returncode, proc.stderr, "training.epochs")


def test_no_test_split_is_one_line(tmp_path: Path, tiny_model_dir: Path, good_csv: Path) -> None:
    """Every task stops when no test rows would be left (data/pipeline.require_test): before/after needs them."""
    code, _, err = prepare_with(tmp_path, tiny_model_dir, train=str(good_csv), split="{validation: 0.2, test: 0.0}")
    assert_one_line_error(code, err, "good.csv", "no test rows", "data.split.test is 0")
