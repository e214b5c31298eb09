"""adapt/shift.py: the proxy A-distance (near 0 for one distribution split in two, near 2 for separable domains)
and `tailor shift`, the domain-shift report of two files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tailorlm.adapt.shift import distinguishing_words, label_shift, length_stats, proxy_a_distance, vocabulary_shift
from tests.conftest import sentiment_rows
from tests.helpers import run_cli
from tests.test_bad_input import assert_one_line_error


def test_proxy_a_distance_tells_same_from_separable() -> None:
    rng = np.random.default_rng(0)
    same = rng.normal(size=(400, 8))
    assert abs(proxy_a_distance(same[:200], same[200:])["proxy_a_distance"]) < 0.3
    far = proxy_a_distance(rng.normal(size=(200, 8)), rng.normal(loc=3.0, size=(200, 8)))
    assert far["domain_accuracy"] > 0.97 and far["proxy_a_distance"] > 1.9


# ------------------------------------------------------------------------------------------- tailor shift


def _two_domains(work: Path) -> tuple[Path, Path]:
    """Source: reviews of services; target: reviews of the same kind that all mention parcels and couriers, longer,
    with a different label balance."""
    source_rows = sentiment_rows(60)
    target_rows = [{"text": f"{row['text']} parcel courier delivered", "label": row["label"]}
                   for row in sentiment_rows(40, seed=3)]
    target_rows += [{"text": "parcel courier delivered late again", "label": "negative"}] * 5
    source, target = work / "source.csv", work / "target.csv"
    pd.DataFrame(source_rows).to_csv(source, index=False)
    pd.DataFrame(target_rows).to_csv(target, index=False)
    return source, target


def test_word_measures_on_a_known_shift() -> None:
    vocab = vocabulary_shift(["a b c", "a b"], ["a b d d"])
    assert vocab["jaccard"] == pytest.approx(2 / 4) and vocab["target_oov_rate"] == pytest.approx(2 / 4)
    assert length_stats(["one two", "one two three four"]) == {"mean": 3.0, "median": 3.0, "p90": 3.8}
    top = distinguishing_words(["cat sat mat"] * 5, ["dog sat mat"] * 5)
    assert top["target"][0]["word"] == "dog" and top["source"][0]["word"] == "cat"
    labels = label_shift(["a", "a", "b", "b"], ["a", "a", "a", "c"])
    assert labels["total_variation"] == pytest.approx(0.5) and labels["only_in_target"] == ["c"]


def test_tailor_shift_prints_and_writes_the_report(tmp_path: Path, tiny_model_dir: Path) -> None:
    source, target = _two_domains(tmp_path)
    args = ["shift", "--source", str(source), "--target", str(target), "--model", str(tiny_model_dir)]
    code, stdout, stderr = run_cli(args)
    assert code == 0, stderr
    assert "vocabulary overlap" in stdout and "proxy A-distance" in stdout and "courier" in stdout
    assert not list(tmp_path.glob("shift.*"))  # without --out it only prints
    out = tmp_path / "report"
    code, stdout, stderr = run_cli([*args, "--out", str(out)])
    assert code == 0, stderr
    report = json.loads((out / "shift.json").read_text())
    assert report["written_by"] == "tailor shift"
    assert 0 < report["vocabulary"]["jaccard"] < 1 and report["vocabulary"]["target_oov_rate"] > 0
    assert report["length_words"]["target"]["mean"] > report["length_words"]["source"]["mean"]
    assert {"parcel", "courier", "delivered"} <= {row["word"] for row in report["distinguishing_words"]["target"]}
    assert -2.0 <= report["embeddings"]["proxy_a_distance"] <= 2.0
    assert report["embeddings"]["embedded_rows"] == {"source": 60, "target": 45}
    assert report["label_shift"]["total_variation"] > 0
    assert "# Domain shift" in (out / "shift.md").read_text()
    code, _, stderr = run_cli([*args, "--out", str(out)])  # its own earlier report is replaced
    assert code == 0, stderr


def test_tailor_shift_refuses_a_foreign_shift_json(tmp_path: Path, tiny_model_dir: Path) -> None:
    source, target = _two_domains(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "shift.json").write_text('{"mine": true}\n')
    code, _, stderr = run_cli(["shift", "--source", str(source), "--target", str(target), "--model",
                               str(tiny_model_dir), "--out", str(out)])
    assert_one_line_error(code, stderr, "not written by tailor shift")
    assert (out / "shift.json").read_text() == '{"mine": true}\n'


@pytest.mark.parametrize("side", ["--source", "--target"])
def test_tailor_shift_missing_file_is_one_line(tmp_path: Path, side: str) -> None:
    present = tmp_path / "present.csv"
    pd.DataFrame(sentiment_rows(10)).to_csv(present, index=False)
    files = {"--source": str(present), "--target": str(present), side: str(tmp_path / "missing.csv")}
    code, _, stderr = run_cli(["shift", *(x for pair in files.items() for x in pair)])
    assert_one_line_error(code, stderr, "missing.csv: file not found", side)


@pytest.mark.parametrize(("content", "needles"), [
    ("words,label\nsome text,a\nmore text,b\n", ["no column 'text'", "--text-column"]),
    ("text,label\nonly one,a\n,b\n", ["1 non-empty texts", "at least 2"]),
])
def test_tailor_shift_unusable_target_is_one_line(tmp_path: Path, content: str, needles: list[str]) -> None:
    present = tmp_path / "present.csv"
    pd.DataFrame(sentiment_rows(10)).to_csv(present, index=False)
    bad = tmp_path / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    code, _, stderr = run_cli(["shift", "--source", str(present), "--target", str(bad)])
    assert_one_line_error(code, stderr, "bad.csv", "--target", *needles)
