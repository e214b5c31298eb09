"""Extractive QA: reading SQuAD and flat files with rejects, SQuAD metrics, post-processing, and `tailor run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tailorlm.data.pipeline import prepare
from tailorlm.demos.qa import generate_qa_dataset
from tailorlm.errors import DataError
from tailorlm.recipe import DataConfig
from tailorlm.tasks.qa.data import QARows, load_qa_eval_file, read_qa_file, split_by_context
from tailorlm.tasks.qa.task import (
    Windows,
    best_over_golds,
    encode_windows,
    f1_score,
    normalize_answer,
    postprocess,
    sentence_retrieval,
    split_sentences,
    squad_metrics,
    window_span_metrics,
)
from tests.helpers import run_cli

CONTEXT = "Glenmor restored power in Kinlochbrae by 4pm. The Storm Credit is £25."


def squad_doc(qas: list[dict], context: str = CONTEXT, version: str = "v2.0") -> dict:
    return {"version": version, "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}


def write_json(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value), encoding="utf-8")
    return path


def qa_frame(rows: list[tuple[str, str, list[str], list[int]]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": str(i), "question": q, "context": c, "answer_texts": t, "answer_starts": s, "is_impossible": not t,
          "source": "mem", "row": i + 1} for i, (q, c, t, s) in enumerate(rows)]
    )


# ---------------------------------------------------------------------------------------------- reading


def test_squad_json_loads_v2_with_unanswerable(tmp_path: Path) -> None:
    doc = squad_doc([
        {"id": "a", "question": "Where was power restored?", "answers": [{"text": "Kinlochbrae", "answer_start": 26}]},
        {"id": "b", "question": "Who fixed the meter?", "answers": [], "is_impossible": True},
    ])
    file = read_qa_file(write_json(tmp_path / "s.json", doc), DataConfig(train="x"))
    assert file.version_2 and not file.rejects
    assert list(file.frame["id"]) == ["a", "b"]
    assert file.frame.at[0, "answer_texts"] == ["Kinlochbrae"] and file.frame.at[0, "answer_starts"] == [26]
    assert bool(file.frame.at[1, "is_impossible"]) and file.frame.at[1, "answer_texts"] == []


def test_flat_jsonl_and_csv_load_with_configured_columns(tmp_path: Path) -> None:
    rows = [{"q": "Where was power restored?", "passage": CONTEXT, "ans": {"text": ["Kinlochbrae"],
                                                                        "answer_start": [26]}}]
    jsonl = tmp_path / "f.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = DataConfig(train="x", question_column="q", context_column="passage", answers_column="ans")
    assert read_qa_file(jsonl, cfg).frame.at[0, "answer_starts"] == [26]
    csv = tmp_path / "f.csv"
    pd.DataFrame([{**r, "ans": json.dumps(r["ans"])} for r in rows]).to_csv(csv, index=False)
    frame = read_qa_file(csv, cfg).frame
    assert frame.at[0, "answer_texts"] == ["Kinlochbrae"] and frame.at[0, "context"] == CONTEXT


def test_each_reject_reason_names_its_row(tmp_path: Path) -> None:
    good = {"text": ["Kinlochbrae"], "answer_start": [26]}
    rows = [
        {"question": "Where?", "context": CONTEXT, "answers": good},  # 1 kept
        {"context": CONTEXT, "answers": good},  # 2 missing_question
        {"question": "  ", "context": CONTEXT, "answers": good},  # 3 empty_question
        {"question": "Where?", "answers": good},  # 4 missing_context
        {"question": "Where?", "context": CONTEXT, "answers": None},  # 5 missing_answers
        {"question": "How much?", "context": CONTEXT, "answers": {"text": ["£99"], "answer_start": [3]}},  # 6
        {"question": "How much?", "context": CONTEXT, "answers": {"text": ["£25"], "answer_start": 0}},  # 7
        {"question": "How much credit?", "context": CONTEXT, "answers": {"text": ["£25"], "answer_start": [0]}},  # 8
        {"question": "Where?", "context": CONTEXT, "answers": good},  # 9 duplicate of 1
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{not json\n", encoding="utf-8")
    frame, rejects = load_qa_eval_file(path)
    by_row = {r["row"]: r["reason"] for r in rejects}
    assert by_row == {2: "missing_question", 3: "empty_question", 4: "missing_context", 5: "missing_answers",
                      6: "answer_not_in_context", 7: "malformed_answers", 9: "duplicate", 10: "malformed_row"}
    assert list(frame["row"]) == [1, 8]
    # row 8: a wrong answer_start is recovered by finding the text in the context
    assert frame.at[1, "answer_starts"] == [CONTEXT.index("£25")]
    assert all({"split", "source", "row", "reason", "detail", "text"} <= set(r) for r in rejects)


def test_v1_squad_without_answers_is_rejected_but_v2_keeps_it(tmp_path: Path) -> None:
    qas = [{"id": "a", "question": "Who?", "answers": []}]
    v1 = read_qa_file(write_json(tmp_path / "v1.json", squad_doc(qas, version="1.1")), DataConfig(train="x"))
    assert [r["reason"] for r in v1.rejects] == ["missing_answers"]
    v2 = read_qa_file(write_json(tmp_path / "v2.json", squad_doc(qas)), DataConfig(train="x"))
    assert not v2.rejects and bool(v2.frame.at[0, "is_impossible"])


def test_missing_column_is_one_line_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps({"query": "x", "context": "y", "answers": None}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"no column 'question'.*data.question_column"):
        read_qa_file(path, DataConfig(train="x"))


def test_split_carved_from_train_keeps_passages_apart(tmp_path: Path) -> None:
    paths = generate_qa_dataset(tmp_path, seed=3, n_passages=30)
    data = prepare(DataConfig(train=str(paths["train"]), split={"validation": 0.15, "test": 0.2}), QARows())
    contexts = [set(data.train["context"]), set(data.validation["context"]), set(data.test["context"])]
    assert all(contexts) and not (contexts[0] & contexts[1]) and not (contexts[0] & contexts[2])
    assert data.report["split_by"] == "context" and data.report["split_from_train"]["test"]
    assert sum(data.report["rows_kept"].values()) == data.report["rows_read"]["train"]
    rest, held = split_by_context(data.train, 0.0, 0)
    assert len(held) == 0 and len(rest) == len(data.train)


def test_demo_generator_is_deterministic_and_answers_are_spans(tmp_path: Path) -> None:
    a = generate_qa_dataset(tmp_path / "a", seed=5, n_passages=12)
    b = generate_qa_dataset(tmp_path / "b", seed=5, n_passages=12)
    assert a["train"].read_text() == b["train"].read_text()
    doc = json.loads(a["train"].read_text())
    assert "Glenmor" in doc["data"][0]["paragraphs"][0]["context"]
    impossible = 0
    for paragraph in doc["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            impossible += qa["is_impossible"]
            for answer in qa["answers"]:
                start = answer["answer_start"]
                assert paragraph["context"][start:start + len(answer["text"])] == answer["text"]
    assert impossible > 0


# ---------------------------------------------------------------------------------------------- metrics


def test_squad_normalisation_and_scores_against_hand_computed_values() -> None:
    assert normalize_answer("The  Storm-Credit, of £25!") == "stormcredit of £25"
    assert normalize_answer("an apple a day") == "apple day"
    # pred "storm credit 25" vs gold "the storm credit": 2 common tokens, P=2/3, R=2/2 -> F1 = 0.8
    assert f1_score("storm credit 25", "the storm credit") == pytest.approx(0.8)
    assert f1_score("", "") == 1.0 and f1_score("x", "") == 0.0 and f1_score("", "x") == 0.0
    # max over gold answers
    assert best_over_golds("Kinlochbrae", ["Strathglen", "in Kinlochbrae"]) == (0.0, pytest.approx(2 / 3))
    metrics = squad_metrics(["£25", "4 pm", ""], [["£25"], ["4pm", "by 4pm"], []])
    # EM: 1, 0, 1 -> 2/3; F1: 1, max(f1("4 pm","4pm")=0, f1("4 pm","by 4pm")=0) = 0, 1 -> 2/3
    assert metrics["exact_match"] == pytest.approx(2 / 3) and metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["n"] == 3 and metrics["no_ans_n"] == 1 and metrics["has_ans_exact_match"] == 0.5
    assert "has_ans_f1" not in squad_metrics(["a"], [["a"]])


def test_window_span_metrics_by_hand() -> None:
    start = np.full((2, 6), -5.0)
    end = np.full((2, 6), -5.0)
    start[0, 2], end[0, 3] = 5.0, 5.0  # predicts tokens 2..3; gold 2..4: overlap 2, F1 = 2*2/(2+3) = 0.8
    start[1, 0], end[1, 0] = 9.0, 9.0  # predicts no answer; gold no answer
    metrics = window_span_metrics(start, end, np.array([2, 0]), np.array([4, 0]), max_answer_length=30)
    assert metrics["exact_match"] == 0.5 and metrics["f1"] == pytest.approx((0.8 + 1.0) / 2)


# ---------------------------------------------------------------------------------------------- post-processing


def test_postprocess_picks_the_best_valid_span_by_hand() -> None:
    context = "pay by Friday or call 0800"
    offsets = [None, None, (0, 3), (4, 6), (7, 13), (14, 16), (17, 21), (22, 26), None]
    windows = Windows(columns={}, example=[0], offsets=[offsets], cls=[0])
    s = np.array([1.0, 9.0, 0.0, 0.0, 3.0, 0.0, 0.0, 5.0, 9.0])  # 1 and 8 are question/SEP: not spans
    e = np.array([1.0, 9.0, 7.0, 0.0, 2.0, 0.0, 0.0, 4.0, 9.0])  # e[2]: ends before the best starts
    (answer,) = postprocess([s], [e], windows, [context], n_best=5, max_answer_length=30)
    # "0800" 5 + 4 = 9 beats "Friday or call 0800" 3 + 4 = 7 and "Friday" 3 + 2 = 5
    assert (answer.text, answer.start) == ("0800", 22)
    (short,) = postprocess([s], [e], windows, [context], n_best=5, max_answer_length=1)
    assert short.text == "0800"
    # SQuAD v2: the null score (cls: 1 + 1 = 2) loses to the span unless the threshold says otherwise
    (null,) = postprocess([s], [e], windows, [context], n_best=5, allow_null=True, null_threshold=-8.0)
    assert null.text == "" and null.start == -1
    (kept,) = postprocess([s], [e], windows, [context], n_best=5, allow_null=True)
    assert kept.text == "0800"


def test_long_context_is_split_into_windows_and_answered_from_the_right_one(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    filler = " ".join(f"word{i}" for i in range(60))
    context = f"{filler} The Storm Credit is twenty five pounds. {filler}"
    answer = "twenty five pounds"
    frame = qa_frame([("How much is the Storm Credit?", context, [answer], [context.index(answer)])])
    windows = encode_windows(frame, tokenizer, max_length=64, stride=16, labels=True)
    assert len(windows) > 3 and set(windows.example) == {0}
    labelled = [w for w in range(len(windows)) if windows.columns["start_positions"][w] != windows.cls[w]]
    assert labelled  # the answer lies inside at least one window
    starts, ends = [], []
    for w in range(len(windows)):
        n = len(windows.columns["input_ids"][w])
        s, e = np.zeros(n), np.zeros(n)
        if w == labelled[-1]:
            s[windows.columns["start_positions"][w]] = e[windows.columns["end_positions"][w]] = 10.0
        starts.append(s)
        ends.append(e)
    (predicted,) = postprocess(starts, ends, windows, [context], allow_null=True)
    assert predicted.text == answer and predicted.start == context.index(answer)


def test_sentence_splitting_and_retrieval_baseline(tiny_model_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    assert split_sentences("One. Two? Three") == ["One.", "Two?", "Three"]
    assert split_sentences("   ") == [""]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    frame = qa_frame([("Where?", CONTEXT, ["Kinlochbrae"], [26])])
    (predicted,) = sentence_retrieval(AutoModel.from_pretrained(tiny_model_dir), tokenizer, frame, 64, 4)
    assert predicted in split_sentences(CONTEXT)


# ---------------------------------------------------------------------------------------------- end to end


def qa_recipe(work: Path, model: str, data: dict[str, Path], **training: object) -> Path:
    recipe = work / "qa.yaml"
    recipe.write_text(yaml.safe_dump({
        "task": "qa",
        "output_dir": str(work / "out"),
        "model": {"name": model},
        "data": {name: str(path) for name, path in data.items()},
        "training": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3, "warmup": 0.0, **training},
    }))
    return recipe


@pytest.fixture(scope="module")
def tiny_qa_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("qa-run")
    paths = generate_qa_dataset(work / "data", seed=1, n_passages=16)
    code, _, stderr = run_cli(["run", str(qa_recipe(work, str(tiny_model_dir), paths, max_length=96, epochs=2))])
    assert code == 0, stderr
    return work / "out"


def test_tuned_qa_model_learned_more_than_an_untrained_control(tiny_qa_run: Path, tmp_path: Path) -> None:
    """Ranges alone pass for a model that never learned. The same recipe with a learning rate of ~0 (same seed,
    data and head initialisation) is the control: the tuned span head must have a clearly lower validation loss.
    Measured: tuned 4.29 against 4.40 for the control (2 epochs of 5 steps on 16 generated passages)."""
    recipe = yaml.safe_load((tiny_qa_run / "recipe.resolved.yaml").read_text())
    control = tmp_path / "control.yaml"
    recipe["output_dir"] = str(tmp_path / "control")
    recipe["training"]["learning_rate"] = 1e-9
    recipe["baseline"] = {"zero_shot": False, "linear_probe": False}
    control.write_text(yaml.safe_dump(recipe))
    code, _, stderr = run_cli(["run", str(control)])
    assert code == 0, stderr
    tuned = json.loads((tiny_qa_run / "metrics.json").read_text())["validation"]["loss"]
    untrained = json.loads((tmp_path / "control" / "metrics.json").read_text())["validation"]["loss"]
    assert tuned < untrained - 0.05, f"validation span loss {tuned:.3f}, control that did not learn {untrained:.3f}"


def test_tailor_run_qa_writes_the_run_directory(tiny_qa_run: Path) -> None:
    for name in ["recipe.resolved.yaml", "data_report.json", "rejects.jsonl", "metrics.json", "log_history.json",
                 "report.html", "report.md", "status.json", "model/model.safetensors", "model/tailor_model.json"]:
        assert (tiny_qa_run / name).is_file(), name
    metrics = json.loads((tiny_qa_run / "metrics.json").read_text())
    assert metrics["task"] == "qa"
    assert set(metrics["baseline"]) == {"sentence_retrieval", "pretrained_head", "span_probe"}
    for part in (*metrics["baseline"].values(), metrics["tuned"]):
        assert 0.0 <= part["exact_match"] <= 1.0 and 0.0 <= part["f1"] <= 1.0 and part["n"] > 0
    # floors are marked and never the bar; the span probe (a reference) is what the paired test is against
    assert {k: v["floor"] for k, v in metrics["baseline"].items()} == {
        "sentence_retrieval": True, "pretrained_head": True, "span_probe": False}
    assert "linear start/end head" in metrics["baseline"]["span_probe"]["method"]
    vs = metrics["significance"]["vs_baseline"]
    assert vs["baseline"] == "span_probe" and vs["baseline_value"] == pytest.approx(
        metrics["baseline"]["span_probe"]["f1"])
    rows = [json.loads(line) for line in (tiny_qa_run / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == metrics["data"]["test"] and all("f1" in r["baselines"]["span_probe"]["scores"] for r in rows)
    assert np.mean([r["baselines"]["span_probe"]["scores"]["f1"] for r in rows]) == pytest.approx(
        metrics["baseline"]["span_probe"]["f1"])
    html = (tiny_qa_run / "report.html").read_text(encoding="utf-8")
    assert "Pretrained head (floor)" in html and "Sentence retrieval (floor)" in html and "Span probe<" in html
    card = (tiny_qa_run / "model" / "README.md").read_text(encoding="utf-8")
    assert "Pretrained head (floor)" in card and "against the best reference baseline (span probe)" in card
    assert "f1" in metrics["validation"] and "exact_match" in metrics["validation"]
    assert metrics["errors"] and {"text", "label", "predicted", "f1"} <= set(metrics["errors"][0])
    meta = json.loads((tiny_qa_run / "model" / "tailor_model.json").read_text())
    assert meta["task"] == "qa" and meta["max_length"] == 96 and meta["doc_stride"] >= 1
    report = json.loads((tiny_qa_run / "data_report.json").read_text())
    assert report["rows_kept"]["test"] == metrics["data"]["test"]


def test_tailor_eval_on_a_squad_file(tiny_qa_run: Path, tmp_path: Path) -> None:
    paths = generate_qa_dataset(tmp_path, seed=9, n_passages=4)
    out = tmp_path / "eval.json"
    code, _, stderr = run_cli(["eval", str(tiny_qa_run), "--data", str(paths["train"]), "--output", str(out)])
    assert code == 0, stderr
    metrics = json.loads(out.read_text())
    assert metrics["n"] > 0 and 0.0 <= metrics["f1"] <= 1.0


def test_tailor_run_qa_with_lora(tmp_path: Path, tiny_model_dir: Path) -> None:
    paths = generate_qa_dataset(tmp_path / "data", seed=2, n_passages=8)
    recipe = qa_recipe(tmp_path, str(tiny_model_dir), paths, max_length=96)
    code, _, stderr = run_cli(["run", str(recipe), "--set", "model.peft.method=lora",
                               "--set", "baseline.zero_shot=false", "--set", "baseline.linear_probe=false"])
    assert code == 0, stderr
    assert (tmp_path / "out" / "model" / "adapter_config.json").is_file()
    config = json.loads((tmp_path / "out" / "model" / "adapter_config.json").read_text())
    assert "qa_outputs" in (config.get("modules_to_save") or [])


@pytest.mark.slow
def test_minilm_tuned_beats_the_untrained_head(tmp_path: Path) -> None:
    """The real shipped MiniLM on ~220 generated questions (167 to train, 105 steps, ~2 min on 2 free cores):
    fine-tuning must beat the untrained span head and the sentence-retrieval heuristic by a wide margin.

    This small regime is sensitive to the batch order: at 3 epochs and lr 3e-4, seeds 42 / 7 / 1 gave tuned F1
    0.12 / 0.58 / 0.11 with the (seed, epoch)-determined order of train/resume.py. At 5 epochs and lr 1e-4, seeds
    42 / 1 gave 0.26 / 0.37 against an untrained head of 0.05 / 0.04 and retrieval 0.10: the bar is set below that.
    """
    paths = generate_qa_dataset(tmp_path / "data", seed=13, n_passages=36, shares=(0.1, 0.2))
    data = {"train": paths["train"], "test": paths["test"]}  # no validation: no per-epoch eval and checkpoint
    recipe = qa_recipe(tmp_path, "minilm", data, epochs=5, batch_size=8, learning_rate=1e-4, warmup=0.1,
                       max_length=128)
    code, _, stderr = run_cli(["run", str(recipe), "--set", "data.split.validation=0"])
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    untrained, retrieval, tuned = (metrics["baseline"]["pretrained_head"], metrics["baseline"]["sentence_retrieval"],
                                   metrics["tuned"])
    assert tuned["f1"] > untrained["f1"] + 0.15 and tuned["f1"] > retrieval["f1"] + 0.1
    assert metrics["baseline"]["span_probe"]["f1"] > untrained["f1"]  # a fitted head beats a random one
    assert tuned["exact_match"] > untrained["exact_match"] + 0.1
