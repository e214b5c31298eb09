"""`tailor run --seeds`, `tailor compare`, `tailor review` and `tailor apply-review` on tiny runs."""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import run_cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, Path]:
    """A 3-seed run and a single run with another learning rate, on the same data (1 epoch each, ~4 steps)."""
    from tests.conftest import sentiment_rows

    work = tmp_path_factory.mktemp("cmp")
    data = work / "reviews.csv"
    pd.DataFrame(sentiment_rows(100)).to_csv(data, index=False)
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "classification",
        "output_dir": str(work / "seeds"),
        "model": {"name": str(tiny_model_dir)},
        "data": {"train": str(data), "split": {"validation": 0.0, "test": 0.4}},  # no validation: no checkpoints
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0,
                     "early_stopping_patience": None},
        "baseline": {"zero_shot": True, "linear_probe": True},
    }))
    code, stdout, stderr = run_cli(["run", str(recipe), "--seeds", "3"])
    assert code == 0, stderr
    code, _, stderr = run_cli(["run", str(recipe), "--set", "training.learning_rate=1e-5",
                               "--set", f"output_dir={work / 'single'}"])
    assert code == 0, stderr
    return {"work": work, "data": data, "seeds": work / "seeds", "single": work / "single", "stdout": stdout}


def test_seeds_write_mean_std_and_ci(runs: dict[str, Path]) -> None:
    top = runs["seeds"]
    for seed in (42, 43, 44):
        assert (top / f"seed-{seed}" / "predictions.jsonl").is_file()
        assert (top / f"seed-{seed}" / "metrics.json").is_file()
    metrics = json.loads((top / "metrics.json").read_text())
    assert metrics["seeds"]["values"] == [42, 43, 44]
    per_seed = list(metrics["seeds"]["per_seed"].values())
    assert metrics["tuned"]["f1_macro"] == pytest.approx(sum(per_seed) / 3)
    seed_tuned = [json.loads((top / f"seed-{s}" / "metrics.json").read_text())["tuned"] for s in (42, 43, 44)]
    for key in ("f1_macro", "accuracy", "ece"):  # ece differs between seeds even when the labels do not
        values = [t[key] for t in seed_tuned]
        assert metrics["tuned"][key] == pytest.approx(statistics.fmean(values)), key
        assert metrics["tuned_std"][key] == pytest.approx(statistics.stdev(values)), key
    ci = metrics["significance"]["ci"]
    assert ci["low"] <= ci["estimate"] <= ci["high"] and ci["resamples"] == 2000
    assert metrics["significance"]["vs_baseline"]["verdict"].endswith("at 5%")
    report = (top / "report.md").read_text()
    assert "Seeds (3)" in report and "95% interval" in report
    resolved = yaml.safe_load((top / "recipe.resolved.yaml").read_text())
    assert resolved["training"]["seeds"] == 3
    assert yaml.safe_load((top / "seed-43" / "recipe.resolved.yaml").read_text())["training"]["seed"] == 43


def test_single_run_records_predictions_ci_and_paired_test(runs: dict[str, Path]) -> None:
    single = runs["single"]
    rows = [json.loads(line) for line in (single / "predictions.jsonl").read_text().splitlines()]
    metrics = json.loads((single / "metrics.json").read_text())
    assert len(rows) == metrics["tuned"]["n"]
    first = rows[0]
    assert {"id", "text", "label", "predicted", "confidence"} <= set(first)
    assert set(first["baselines"]) == {"zero_shot", "linear_probe"}
    assert "per_example" not in json.dumps(metrics["baseline"])  # kept out of metrics.json
    vs = metrics["significance"]["vs_baseline"]
    assert "mcnemar" in vs and 0 <= vs["p_value"] <= 1
    assert "Gain vs best baseline" in (single / "report.md").read_text()


def test_compare_prints_differing_keys_and_verdict(runs: dict[str, Path]) -> None:
    out = runs["work"] / "cmp-out"
    code, stdout, stderr = run_cli(["compare", str(runs["single"]), str(runs["seeds"]), "--out", str(out)])
    assert code == 0, stderr
    assert "training.learning_rate" in stdout and "training.seeds" in stdout
    assert "output_dir" not in stdout
    assert "±" in stdout  # the seeds run shows mean ± std
    line = " ".join(stdout.split())  # rich wraps long lines
    found = re.search(r"seeds vs single \(f1_macro\): difference ([+-]\d\.\d+) \(95% CI ([+-]\d\.\d+) to "
                      r"([+-]\d\.\d+)\), paired bootstrap p = (\d\.\d+): (not significant|significant) at 5%", line)
    assert found, line
    difference, low, high, p_value = (float(found.group(i)) for i in range(1, 5))
    tuned = {name: json.loads((runs[name] / "metrics.json").read_text())["tuned"] for name in ("seeds", "single")}
    assert difference == pytest.approx(tuned["seeds"]["f1_macro"] - tuned["single"]["f1_macro"], abs=1e-4)
    assert low <= difference <= high
    expected = "significant" if p_value < 0.05 else "not significant"
    assert found.group(5) == expected, f"p = {p_value} printed as {found.group(5)!r}"
    assert (p_value < 0.05) == (low > 0 or high < 0), "the verdict and the 95% interval must agree"
    for name in ("compare.md", "compare.csv", "compare.png"):
        assert (out / name).is_file()
    assert "Is the difference real?" in (out / "compare.md").read_text()


def test_compare_lists_one_file_under_one_spelling_and_values_whole(runs: dict[str, Path]) -> None:
    """The same data file named relative in one run and absolute in the other is no difference; a long value is
    shown whole."""
    work = runs["work"]
    other = work / "single-relative"
    shutil.copytree(runs["single"], other, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model"))
    recipe = yaml.safe_load((other / "recipe.resolved.yaml").read_text())
    recipe["data"]["train"] = runs["data"].name  # as written in a recipe run from `work`
    licence = "a-licence-name-long-enough-that-a-sixty-character-cut-would-hide-where-it-ends-END"
    recipe["report"]["license"] = licence
    (other / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe))
    info = json.loads((other / "run_info.json").read_text())
    (other / "run_info.json").write_text(json.dumps(info | {"cwd": str(work)}))
    out = work / "cmp-spelling"
    code, stdout, stderr = run_cli(["compare", str(runs["single"]), str(other), "--out", str(out)])
    assert code == 0, stderr
    assert "data.train" not in stdout and "report.license" in stdout
    assert licence in (out / "compare.md").read_text() and licence in (out / "compare.csv").read_text()


def test_compare_refuses_pairing_different_test_sets(runs: dict[str, Path]) -> None:
    other = runs["work"] / "other-test"
    shutil.copytree(runs["single"], other, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model"))
    lines = (other / "predictions.jsonl").read_text().splitlines()
    (other / "predictions.jsonl").write_text("\n".join(lines[1:]) + "\n")
    code, stdout, _ = run_cli(["compare", str(runs["single"]), str(other), "--out", str(runs["work"] / "c2")])
    assert code == 0
    assert "different test sets" in stdout


def test_review_round_trip_changes_exactly_the_named_labels(runs: dict[str, Path]) -> None:
    work, data = runs["work"], runs["data"]
    original = data.read_bytes()
    review = work / "review.csv"
    code, stdout, stderr = run_cli(["review", str(runs["seeds"]), "--out", str(review), "--limit", "10"])
    assert code == 0, stderr
    assert "wrote" in stdout and "apply-review" in stdout
    # the test rows came from the training file (a carved test split): the suggestion names it, and warns
    assert f"--data {data}`" in " ".join(stdout.split()) and "TRAIN_FILE" not in stdout
    assert "test split" in stderr and "look better" in " ".join(stderr.split())
    with review.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert 0 < len(rows) <= 10
    assert list(rows[0]) == ["id", "source", "row", "split", "text", "label", "predicted", "confidence", "reason",
                             "corrected_label", "note"]
    assert {r["split"] for r in rows} == {"test"}
    assert all(r["reason"] and r["corrected_label"] == "" for r in rows)
    # the expert corrects two rows found by id (source + row) and one given only by text
    flip = {"positive": "negative", "negative": "positive"}
    rows[0]["corrected_label"], rows[0]["note"] = flip[rows[0]["label"]], "sarcasm"
    rows[1]["corrected_label"] = flip[rows[1]["label"]]
    frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    by_text_row = next(i for i in range(len(frame)) if frame.at[i, "text"] not in {r["text"] for r in rows})
    rows.append({"id": "", "source": "", "row": "", "split": "", "text": frame.at[by_text_row, "text"].upper(),
                 "label": "",
                 "predicted": "", "confidence": "", "reason": "", "note": "",
                 "corrected_label": flip[frame.at[by_text_row, "label"]]})
    with review.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    code, _, stderr = run_cli(["apply-review", str(review), "--data", str(data)])
    assert code == 0, stderr
    assert "2 of the changed labels are test rows" in " ".join(stderr.split())
    assert data.read_bytes() == original  # the original is never touched
    new = data.with_name("reviews.v2.csv")
    before, after = pd.read_csv(data, dtype=str), pd.read_csv(new, dtype=str)
    changed = {int(r["row"]) - 1 for r in rows[:2]} | {by_text_row}
    assert (before["text"] == after["text"]).all()
    differs = set(before.index[before["label"] != after["label"]])
    assert differs == changed
    for i in changed:
        assert after.at[i, "label"] == flip[before.at[i, "label"]]
    old_lines, new_lines = data.read_text().splitlines(), new.read_text().splitlines()
    assert [i for i, (a, b) in enumerate(zip(old_lines, new_lines, strict=True)) if a != b] == sorted(
        i + 1 for i in changed)  # byte-identical elsewhere (line 0 is the header)
    log = list(csv.DictReader(data.with_name("reviews.v2.changes.csv").open(encoding="utf-8")))
    assert len(log) == 3 and {r["matched_by"] for r in log} == {"row", "text"}
    assert sorted(r["split"] for r in log) == ["", "test", "test"]  # which split each correction came from
    assert next(r for r in log if r["note"] == "sarcasm")["old_label"] == rows[0]["label"]

    code, _, _ = run_cli(["apply-review", str(review), "--data", str(data)])
    assert code == 0 and data.with_name("reviews.v3.csv").is_file()  # a second application never overwrites v2


def test_apply_review_unknown_label_is_one_line_error(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "good service", "label": "pos"}\n{"text": "slow refund", "label": "neg"}\n')
    review = tmp_path / "review.csv"
    review.write_text("id,text,corrected_label\ntrain.jsonl:2,slow refund,neutral\n")
    code, _, stderr = run_cli(["apply-review", str(review), "--data", str(data)])
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "row 1" in lines[0] and "neutral" in lines[0] and "neg, pos" in lines[0]
    code, _, stderr = run_cli(["apply-review", str(review), "--data", str(data), "--allow-new-labels"])
    assert code == 0, stderr
    changed = (tmp_path / "train.v2.jsonl").read_text().splitlines()
    assert changed[0] == '{"text": "good service", "label": "pos"}'
    assert json.loads(changed[1]) == {"text": "slow refund", "label": "neutral"}


def test_review_with_data_scores_that_file(runs: dict[str, Path]) -> None:
    review = runs["work"] / "review-data.csv"
    code, _, stderr = run_cli(["review", str(runs["single"]), "--data", str(runs["data"]), "--out", str(review),
                                    "--limit", "5"])
    assert code == 0, stderr
    rows = list(csv.DictReader(review.open(encoding="utf-8")))
    assert len(rows) == 5 and all(r["source"].endswith("reviews.csv") for r in rows)
    assert {r["split"] for r in rows} == {"data"} and "test split" not in stderr
