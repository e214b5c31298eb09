"""Token classification (NER): reading CoNLL/JSONL with rejects, sub-word label alignment, seqeval metrics, the
majority-tag baseline, the demo generator, and `tailor run` / `tailor eval` end to end on a tiny random BERT."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from tailorlm.data.pipeline import prepare
from tailorlm.demos.token_classification import generate_ner_dataset, generate_ner_splits
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig
from tailorlm.tasks.token_classification.data import TokenRows, load_token_file, read_token_file, repair_bio
from tests.helpers import run_cli

CONLL = """-DOCSTART- -X- -X- O

the DT B-NP O
power NN I-NP O
is VBZ B-VP O
off RP B-PRT O
in IN B-PP O
Strathglen NNP B-NP B-PLACE

switch VB B-VP O
to TO B-PP O
Heather NNP B-NP B-TARIFF
Saver NNP I-NP I-TARIFF
"""


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- reading


def test_conll_reads_sentences_with_their_start_line(tmp_path: Path) -> None:
    path = tmp_path / "train.conll"
    path.write_text(CONLL, encoding="utf-8")
    table = read_token_file(path)
    assert [r["row"] for r in table.records] == [3, 10]  # -DOCSTART- skipped; row = first line of the sentence
    assert table.records[0]["tokens"] == ["the", "power", "is", "off", "in", "Strathglen"]
    assert table.records[0]["tags"][-1] == "B-PLACE"  # the tag is the last column, whatever sits between
    assert table.records[1]["tags"] == ["O", "O", "B-TARIFF", "I-TARIFF"]
    assert not table.rejects


def test_conll_line_without_a_tag_rejects_its_sentence(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"  # .txt is read as CoNLL for this task
    path.write_text("a O\nb O\n\nc O\nd\ne O\n\nf B-PLACE\n", encoding="utf-8")
    table = read_token_file(path)
    assert [r["row"] for r in table.records] == [1, 8]
    (bad,) = table.rejects
    assert (bad["row"], bad["reason"]) == (4, "malformed_row")
    assert "line 5" in bad["detail"] and bad["text"] == "c d e"


def test_jsonl_reads_configured_columns(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "t.jsonl", [{"words": ["in", "Dunmhor"], "ner": ["O", "B-PLACE"]}])
    table = read_token_file(path, tokens_column="words", tags_column="ner")
    assert table.records == [{"row": 1, "tokens": ["in", "Dunmhor"], "tags": ["O", "B-PLACE"]}]
    with pytest.raises(DataError, match=r"no column 'tags'.*data\.tags_column"):
        read_token_file(path, tokens_column="words")


def test_rejects_name_row_and_reason(tmp_path: Path) -> None:
    good = {"tokens": ["flitting", "to", "Glenbuie"], "tags": ["O", "O", "B-PLACE"]}
    train = _jsonl(tmp_path / "train.jsonl", [
        good,                                                                   # 1
        {"tokens": ["a", "b"], "tags": ["O"]},                                  # 2 length_mismatch
        {"tokens": [], "tags": []},                                             # 3 empty_text
        {"tokens": "pay by Friday", "tags": ["O", "O", "B-DATE"]},              # 4 not_a_list
        {"tokens": ["on", "Friday"], "tags": ["O", "DATE"]},                    # 5 invalid_bio
        "{not json",                                                            # 6 malformed_row
        {"tokens": ["ref", "GW-1"], "tags": ["O", "I-ACCOUNT"]},                # 7 repaired to B-ACCOUNT
        good,                                                                   # 8 duplicate
        {"tokens": ["meter", "GLM-1"], "tags": ["O", "B-METER"]},               # 9 kept
        {"tokens": ["on", "Friday", "in", "Dunmhor"], "tags": ["O", "B-DATE", "O", "B-PLACE"]},  # 10 kept
    ])
    test = _jsonl(tmp_path / "test.jsonl", [
        {"tokens": ["in", "Portmorran"], "tags": ["O", "B-PLACE"]},
        {"tokens": ["on", "Nightglow"], "tags": ["O", "B-TARIFF"]},            # 2 unknown_label (no TARIFF in train)
    ])
    cfg = DataConfig(train=str(train), test=str(test), split={"validation": 0.0, "test": 0.0})
    data = prepare(cfg, TokenRows())
    found = {(r["split"], r["row"]): r["reason"] for r in data.rejects}
    assert found == {
        ("train", 2): "length_mismatch", ("train", 3): "empty_text", ("train", 4): "not_a_list",
        ("train", 5): "invalid_bio", ("train", 6): "malformed_row", ("train", 8): "duplicate",
        ("test", 2): "unknown_label",
    }
    assert all(r["source"] and r["detail"] for r in data.rejects)
    assert "B-ACCOUNT" in data.labels and "I-ACCOUNT" not in data.labels  # the I- opener was repaired
    assert data.labels == sorted(data.labels) and "O" in data.labels
    report = data.report
    assert report["rows_rejected"] == {"train": 6, "validation": 0, "test": 1}
    assert report["removed"]["length_mismatch"] == 1 and report["repaired_bio"] == 1
    assert report["label_distribution"]["train"] == {"ACCOUNT": 1, "DATE": 1, "METER": 1, "PLACE": 2}
    assert any("I- tag" in w for w in report["warnings"])
    assert list(data.test["row"]) == [1]


def test_given_labels_override_and_eval_file_checks_tags(tmp_path: Path) -> None:
    places = [{"tokens": ["in", f"place{i}"], "tags": ["O", "B-PLACE"]} for i in range(4)]
    dates = [{"tokens": ["on", f"day{i}"], "tags": ["O", "B-DATE"]} for i in range(9)]
    train = _jsonl(tmp_path / "train.jsonl", places + dates)
    cfg = DataConfig(train=str(train), labels=["PLACE"], split={"validation": 0.0, "test": 0.2})
    data = prepare(cfg, TokenRows())
    assert data.labels == ["B-PLACE", "I-PLACE", "O"]  # entity types expand to B-/I-, O is added
    assert {r["reason"] for r in data.rejects} == {"unknown_label"}
    frame, rejects = load_token_file(train, data.labels)
    assert len(frame) == 4 and len(rejects) == 9 and rejects[0]["label"] == "B-DATE"
    assert [r["row"] for r in rejects] == list(range(5, 14))


def test_repair_bio() -> None:
    assert repair_bio(["O", "I-PLACE", "I-PLACE", "I-DATE", "B-DATE", "I-DATE"]) == (
        ["O", "B-PLACE", "I-PLACE", "B-DATE", "B-DATE", "I-DATE"], 2)


# ---------------------------------------------------------------------------------------------- tokenization, metrics


def test_labels_align_to_first_subword(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from tailorlm.tasks.token_classification.task import IGNORE, align_labels

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = ["Glenmor", "in", "Strathglen"]
    encoded = tokenizer([words], is_split_into_words=True)
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert pieces == ["[CLS]", "glen", "##mo", "##r", "in", "st", "##rath", "##gle", "##n", "[SEP]"]
    labels = align_labels(encoded.word_ids(0), [5, 0, 3])
    assert labels == [IGNORE, 5, IGNORE, IGNORE, 0, 3, IGNORE, IGNORE, IGNORE, IGNORE]
    assert align_labels(encoded.word_ids(0), [5, 0, 3], label_all=True)[1:4] == [5, 5, 5]


def test_entity_metrics_hand_example() -> None:
    from tailorlm.tasks.token_classification.task import entity_metrics

    gold = [["B-PLACE", "I-PLACE", "O", "B-DATE"], ["O", "B-TARIFF", "I-TARIFF"]]
    pred = [["B-PLACE", "I-PLACE", "O", "O"], ["O", "B-TARIFF", "O"]]  # 1 right of 3 gold; 1 right of 2 predicted
    m = entity_metrics(gold, pred)
    assert m["precision"] == pytest.approx(1 / 2) and m["recall"] == pytest.approx(1 / 3)
    assert m["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert m["accuracy"] == pytest.approx(5 / 7)  # word accuracy
    assert m["per_class"]["PLACE"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    assert m["per_class"]["DATE"]["recall"] == 0.0 and m["per_class"]["TARIFF"]["precision"] == 0.0
    assert m["f1_macro"] == pytest.approx(1 / 3)
    assert (m["n"], m["n_words"], m["n_entities"]) == (2, 7, 3)


def test_per_sentence_entity_counts_give_seqeval_f1_and_the_bootstrap_resamples_sentences() -> None:
    import numpy as np

    from tailorlm.evaluate.stats import entity_f1_stat, paired_bootstrap, point
    from tailorlm.tasks.token_classification.task import entity_counts, entity_metrics

    gold = [["B-PLACE", "I-PLACE", "O", "B-DATE"], ["O", "B-TARIFF", "I-TARIFF"], ["B-DATE", "O"]]
    pred = [["B-PLACE", "I-PLACE", "O", "O"], ["O", "B-TARIFF", "O"], ["B-DATE", "B-PLACE"]]
    counts = [entity_counts(g, p) for g, p in zip(gold, pred, strict=True)]
    assert counts == [{"tp": 1, "fp": 0, "fn": 1}, {"tp": 0, "fp": 1, "fn": 1}, {"tp": 1, "fp": 1, "fn": 0}]
    stat = entity_f1_stat(counts)
    assert point(stat, 3) == pytest.approx(entity_metrics(gold, pred)["f1"])  # a ratio of sums, not a mean
    assert float(stat(np.array([[2, 2, 2]]))[0]) == pytest.approx(2 / 3)  # one sentence thrice: 2*1/(2+1)
    assert paired_bootstrap(stat, stat, 3)["difference"] == 0.0


def test_majority_tag_baseline() -> None:
    import pandas as pd

    from tailorlm.tasks.token_classification.task import majority_tag

    train = pd.DataFrame({"tokens": [["in", "Dunmhor"], ["to", "Dunmhor"], ["in", "May"]],
                          "tags": [["O", "B-PLACE"], ["O", "B-PLACE"], ["O", "B-DATE"]]})
    test = pd.DataFrame({"tokens": [["at", "dunmhor"], ["in", "Lochcarran"]],
                         "tags": [["O", "B-PLACE"], ["O", "B-PLACE"]]})
    m = majority_tag(train, test)
    assert m["precision"] == 1.0 and m["recall"] == 0.5  # lower-cased match found, unseen place missed


# ---------------------------------------------------------------------------------------------- demo data


def test_demo_generator_is_deterministic_and_writes_both_formats(tmp_path: Path) -> None:
    a = generate_ner_dataset(tmp_path / "a", seed=3, n_sentences=120)
    b = generate_ner_dataset(tmp_path / "b", seed=3, n_sentences=120)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    conll = read_token_file(a["train.conll"])
    jsonl = read_token_file(a["train.jsonl"])
    assert [(r["tokens"], r["tags"]) for r in conll.records] == [(r["tokens"], r["tags"]) for r in jsonl.records]
    splits = generate_ner_splits(seed=3, n_sentences=120)
    seen = [tuple(r["tokens"]) for rows in splits.values() for r in rows]
    assert len(seen) == len(set(seen)) == 120
    types = {t[2:] for rows in splits.values() for r in rows for t in r["tags"] if t != "O"}
    assert types == {"PLACE", "TARIFF", "ACCOUNT", "DATE", "METER"}


def test_demo_data_command_dispatches_on_task(tmp_path: Path) -> None:
    code, _, stderr = run_cli(["demo-data", "--task", "token-classification", "--out", str(tmp_path),
                                    "--seed", "1"])
    assert code == 0, stderr
    assert (tmp_path / "test.conll").is_file() and (tmp_path / "train.jsonl").is_file()
    code, _, stderr = run_cli(["demo-data", "--task", "nope", "--out", str(tmp_path)])
    assert code == 2 and "token-classification" in stderr


# ---------------------------------------------------------------------------------------------- end to end


def _recipe(work: Path, model: str, data: dict[str, Path], out: str, **training: object) -> Path:
    recipe = work / f"{out}.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "token-classification",
        "output_dir": str(work / out),
        "model": {"name": model},
        "data": {name: str(path) for name, path in data.items()},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0,
                     "early_stopping_patience": None, **training},
    }))
    return recipe


@pytest.fixture(scope="module")
def ner_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return generate_ner_dataset(tmp_path_factory.mktemp("ner-data"), seed=5, n_sentences=120)


@pytest.fixture(scope="module")
def tiny_ner_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, ner_files: dict[str, Path]) -> Path:
    work = tmp_path_factory.mktemp("ner-run")
    data = {"train": ner_files["train.conll"], "validation": ner_files["validation.jsonl"],
            "test": ner_files["test.jsonl"]}
    code, _, stderr = run_cli(["run", str(_recipe(work, str(tiny_model_dir), data, "out"))])
    assert code == 0, stderr
    assert "majority tag" in stderr
    return work / "out"


def test_tailor_run_writes_run_directory_and_metrics(tiny_ner_run: Path) -> None:
    for name in ["recipe.resolved.yaml", "data_report.json", "rejects.jsonl", "metrics.json", "log_history.json",
                 "report.html", "model/model.safetensors", "model/tailor_model.json"]:
        assert (tiny_ner_run / name).is_file(), name
    metrics = json.loads((tiny_ner_run / "metrics.json").read_text())
    assert metrics["task"] == "token-classification"
    assert set(metrics["baseline"]) == {"majority_tag", "linear_probe"}
    tuned = metrics["tuned"]
    for key in ("f1", "precision", "recall", "f1_micro", "f1_macro", "precision_macro", "recall_macro", "accuracy"):
        assert 0.0 <= tuned[key] <= 1.0, key
    assert set(tuned["per_class"]) <= {"PLACE", "TARIFF", "ACCOUNT", "DATE", "METER"}
    assert tuned["n"] == metrics["data"]["test"]
    assert 0.0 < metrics["baseline"]["majority_tag"]["f1"] < 1.0
    assert "f1" in metrics["validation"]  # the Trainer's compute_metrics ran on validation
    # it learned: ranges hold for a model that did not. Measured: 11 tags, validation loss 1.98 (uniform guess
    # ln 11 = 2.40; the same run at learning rate ~0: 2.38), train loss 2.38 -> 1.98 over its 6 steps
    meta = json.loads((tiny_ner_run / "model" / "tailor_model.json").read_text())
    uniform_guess = math.log(len(meta["tags"]))
    assert metrics["validation"]["loss"] < 0.9 * uniform_guess, (metrics["validation"]["loss"], uniform_guess)
    losses = [entry["loss"] for entry in json.loads((tiny_ner_run / "log_history.json").read_text())
              if "loss" in entry]
    assert losses[-1] < 0.9 * losses[0], losses
    rows = [json.loads(line) for line in (tiny_ner_run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["data"]["test"] and {"tp", "fp", "fn"} == set(rows[0]["scores"])
    assert set(rows[0]["baselines"]) == {"majority_tag", "linear_probe"}
    test = metrics["significance"]["vs_baseline"]  # entity F1 vs the probe, sentences resampled
    assert test["baseline"] == "linear_probe" and metrics["significance"]["metric"] == "f1"
    assert test["bootstrap"]["difference"] == pytest.approx(tuned["f1"] - metrics["baseline"]["linear_probe"]["f1"])
    assert isinstance(metrics["errors"], list)
    for error in metrics["errors"]:
        assert {"text", "label", "predicted", "gold_entities", "predicted_entities", "row"} <= set(error)
    meta = json.loads((tiny_ner_run / "model" / "tailor_model.json").read_text())
    assert meta["task"] == "token-classification" and meta["max_length"] >= 8
    assert meta["labels"] == metrics["labels"] == ["ACCOUNT", "DATE", "METER", "PLACE", "TARIFF"]
    config = json.loads((tiny_ner_run / "model" / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(meta["tags"]))] == meta["tags"]
    assert "O" in meta["tags"] and "B-PLACE" in meta["tags"]


def test_tailor_eval_on_a_conll_file(tiny_ner_run: Path, ner_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "eval.json"
    code, _, stderr = run_cli(["eval", str(tiny_ner_run), "--data", str(ner_files["test.conll"]), "--output", str(out)])
    assert code == 0, stderr
    evaluated = json.loads(out.read_text())
    tuned = json.loads((tiny_ner_run / "metrics.json").read_text())["tuned"]
    assert evaluated["n"] == tuned["n"] and evaluated["f1"] == pytest.approx(tuned["f1"], abs=1e-6)


def test_lora_run(tmp_path: Path, tiny_model_dir: Path, ner_files: dict[str, Path]) -> None:
    recipe = _recipe(tmp_path, str(tiny_model_dir), {"train": ner_files["train.jsonl"]}, "lora")
    code, _, stderr = run_cli(["run", str(recipe), "--set", "model.peft.method=lora", "--set", "model.peft.r=4",
                               "--set", "baseline.linear_probe=false"])
    assert code == 0, stderr
    out = tmp_path / "lora"
    assert (out / "model" / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["trainable_params"] < metrics["train"]["total_params"]
    assert set(metrics["baseline"]) == {"majority_tag"}
    code, _, stderr = run_cli(["eval", str(out), "--data", str(ner_files["test.jsonl"])])
    assert code == 0, stderr  # the adapter reloads with the token-classification head


@pytest.mark.slow
def test_minilm_beats_the_majority_tag_baseline(tmp_path: Path) -> None:
    """The shipped MiniLM, tuned briefly on a few hundred generated sentences, beats a word list on test."""
    files = generate_ner_dataset(tmp_path / "data", seed=13, n_sentences=400)
    data = {"train": files["train.jsonl"], "validation": files["validation.jsonl"], "test": files["test.jsonl"]}
    recipe = _recipe(tmp_path, "minilm", data, "out", epochs=2, batch_size=8, learning_rate=3e-4)
    code, _, stderr = run_cli(["run", str(recipe), "--set", "baseline.linear_probe=false"])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    tuned, baseline = metrics["tuned"]["f1"], metrics["baseline"]["majority_tag"]["f1"]
    assert tuned > baseline + 0.05, f"tuned entity F1 {tuned:.3f} vs majority-tag {baseline:.3f}"
