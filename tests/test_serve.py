"""Serving: `tailor predict` for every task, the HTTP server (`tailor serve`) and the model card (`tailor card`).

Every model is a tiny random one trained for one epoch by a real `tailor run` on a few dozen rows, so the
predictions are meaningless but their shape, their bookkeeping (row numbers, error entries) and the agreement
between the CLI, the library and the server are what is checked.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tailorlm.errors import UserError
from tests.helpers import run_cli

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------- helpers


def _run(work: Path, recipe: dict[str, Any]) -> Path:
    """`tailor run` a recipe (1 epoch, no early stopping) and return its run directory."""
    recipe = {"output_dir": str(work / "out"), **recipe}
    recipe["training"] = {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "warmup": 0.0,
                          "early_stopping_patience": None, **recipe.get("training", {})}
    path = work / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, stderr = run_cli(["run", str(path)])
    assert code == 0, stderr
    return work / "out"


def _word_tokenizer(texts: list[str], append_eos: bool) -> Any:
    """A word-level tokenizer over ``texts`` (no download, no sentencepiece); T5-style ``</s>`` when asked."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    if append_eos:
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=128)


def _save(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


_OUTPUTS = itertools.count()


def _predict(*args: str) -> list[dict[str, Any]]:
    """`tailor predict ARGS --out FILE` and the JSON lines it wrote."""
    out = Path(args[0]).parent / f"predictions-{next(_OUTPUTS)}.jsonl"
    code, _, stderr = run_cli(["predict", *args, "--out", str(out)])
    assert code == 0, stderr
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _one_line_error(code: int, stderr: str, *needles: str) -> None:
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in stderr, stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from tests.conftest import sentiment_rows

    work = tmp_path_factory.mktemp("serve-cls")
    data = work / "reviews.csv"
    pd.DataFrame(sentiment_rows(64)).to_csv(data, index=False)
    return _run(work, {"task": "classification", "model": {"name": str(tiny_model_dir)},
                       "data": {"train": str(data), "split": {"validation": 0.15, "test": 0.25}}})


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """A LoRA adapter, so predict and the card are checked on an adapter too."""
    from tailorlm.demos.qa import generate_qa_dataset

    work = tmp_path_factory.mktemp("serve-qa")
    paths = generate_qa_dataset(work / "data", seed=1, n_passages=8)
    return _run(work, {"task": "qa", "model": {"name": str(tiny_model_dir), "peft": {"method": "lora", "r": 4}},
                       "data": {name: str(path) for name, path in paths.items()},
                       "training": {"max_length": 96}, "baseline": {"zero_shot": False, "linear_probe": False}})


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    from tailorlm.demos.token_classification import generate_ner_dataset

    work = tmp_path_factory.mktemp("serve-ner")
    files = generate_ner_dataset(work / "data", seed=5, n_sentences=60)
    return _run(work, {"task": "token-classification", "model": {"name": str(tiny_model_dir)},
                       "data": {"train": str(files["train.jsonl"]), "validation": str(files["validation.jsonl"]),
                                "test": str(files["test.jsonl"])},
                       "baseline": {"linear_probe": False}})


@pytest.fixture(scope="module")
def mt_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from tailorlm.demos.translation import demo_pairs, generate_demo_mt

    work = tmp_path_factory.mktemp("serve-mt")
    pairs = demo_pairs(200, seed=7)
    tokenizer = _word_tokenizer([*pairs["source"], *pairs["target"], "translate Scots to English:"], True)
    torch.manual_seed(0)
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, num_layers=1, num_heads=2, d_kv=16,
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, dropout_rate=0.0)
    model_dir = _save(T5ForConditionalGeneration(config), tokenizer, work / "tiny-t5")
    files = generate_demo_mt(work / "data", n_rows=60, seed=7)
    return _run(work, {"task": "translation", "model": {"name": str(model_dir)},
                       "data": {"train": str(files["train"]), "validation": str(files["validation"]),
                                "test": str(files["test"]), "source_lang": "sco", "target_lang": "en"},
                       "baseline": {"zero_shot": False}, "generation": {"max_new_tokens": 8, "samples": 1}})


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from tailorlm.demos.generation import generate_generation_demo

    work = tmp_path_factory.mktemp("serve-gen")
    paths = generate_generation_demo(work / "data", seed=3, n_train=24, n_validation=6, n_test=6)
    rows = [json.loads(line) for p in paths.values() for line in Path(p).read_text().splitlines()]
    template = "### Instruction:\n\n### Response:\n"
    tokenizer = _word_tokenizer([template, *(r["prompt"] for r in rows), *(r["response"] for r in rows)], False)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128,
                         pad_token_id=0, eos_token_id=1, bos_token_id=1)
    model_dir = _save(LlamaForCausalLM(config), tokenizer, work / "tiny-llama")
    return _run(work, {"task": "generation", "model": {"name": str(model_dir)},
                       "data": {name: str(path) for name, path in paths.items()},
                       "generation": {"max_new_tokens": 6, "samples": 1}})


# ---------------------------------------------------------------------------------------------- predict


def test_predict_classification_texts_and_file_rows(cls_run: Path, tmp_path: Path) -> None:
    code, stdout, stderr = run_cli(["predict", str(cls_run), "--text", "the bill was awful and slow"])
    assert code == 0, stderr
    row = json.loads(stdout)
    assert row["label"] in {"negative", "positive"} and row["text"] == "the bill was awful and slow"
    assert row["confidence"] == max(row["probabilities"].values())
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)

    file = tmp_path / "texts.csv"
    file.write_text("id,text\n1,the app was lovely and quick\n2,\n3,the call was rude and late\n", encoding="utf-8")
    rows = _predict(str(cls_run / "model"), "--input", str(file))
    assert [r["row"] for r in rows] == [1, 2, 3], "every row is accounted for, in file order"
    assert rows[1] == {"row": 2, "id": "2", "text": "", "error": "empty_text", "detail": "'text' is empty"}
    assert {"label", "confidence", "probabilities"} <= set(rows[0]) and "error" not in rows[2]
    same = _predict(str(cls_run), "--text", "the app was lovely and quick")[0]
    assert same["probabilities"] == rows[0]["probabilities"], "file rows and --text share one code path"


def test_predict_input_keeps_id_and_input_columns(cls_run: Path, tmp_path: Path) -> None:
    """Results join back to the file: id and the input columns by default, --keep-columns for more or fewer."""
    file = tmp_path / "texts.csv"
    file.write_text("id,text,region\nA7,The App was lovely,north\nB2,42,south\n", encoding="utf-8")
    rows = _predict(str(cls_run), "--input", str(file))
    assert [(r["row"], r["id"]) for r in rows] == [(1, "A7"), (2, "B2")]
    assert rows[0]["text"] == "The App was lovely" and "region" not in rows[0] and "label" in rows[0]
    everything = _predict(str(cls_run), "--input", str(file), "--keep-columns", "*")
    assert [r["region"] for r in everything] == ["north", "south"]
    nothing = _predict(str(cls_run), "--input", str(file), "--keep-columns", "")
    assert "id" not in nothing[0] and "region" not in nothing[0] and "label" in nothing[0]
    chosen = _predict(str(cls_run), "--input", str(file), "--keep-columns", "region")
    assert chosen[1]["region"] == "south" and "id" not in chosen[1]


def test_eval_scores_every_row_unless_asked_to_clean(cls_run: Path, tmp_path: Path) -> None:
    """The file the user asked to score is scored whole: duplicates and short texts count; --clean drops them."""
    from tests.conftest import sentiment_rows

    rows = sentiment_rows(6, seed=3)
    frame = pd.DataFrame(rows + rows + [{"text": "k", "label": "positive"}, {"text": "", "label": "negative"}])
    file = tmp_path / "to-score.csv"
    frame.to_csv(file, index=False)
    out = tmp_path / "eval.json"
    code, _, stderr = run_cli(["eval", str(cls_run), "--data", str(file), "--out", str(out)])
    assert code == 0, stderr
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 13 and metrics["rejected"] == 1  # only the empty text cannot be scored
    code, _, stderr = run_cli(["eval", str(cls_run), "--data", str(file), "--out", str(out), "--clean"])
    assert code == 0, stderr
    assert json.loads(out.read_text())["n"] == 6  # the test split's cleaning: duplicates and "k" (too short) go


def test_predict_errors_are_one_line(cls_run: Path, qa_run: Path, tmp_path: Path) -> None:
    file = tmp_path / "other.csv"
    file.write_text("body\nhello there\n", encoding="utf-8")
    _one_line_error(*run_cli(["predict", str(cls_run), "--input", str(file)])[::2], "no column 'text'", "body")
    rows = _predict(str(cls_run), "--input", str(file), "--text-column", "body")
    assert rows[0]["row"] == 1 and "label" in rows[0]
    _one_line_error(*run_cli(["predict", str(cls_run), "--text", "  "])[::2], "--text", "'text' is empty")
    _one_line_error(*run_cli(["predict", str(qa_run), "--text", "hello"])[::2], "qa model", "--question")
    _one_line_error(*run_cli(["predict", str(qa_run), "--question", "when?"])[::2], "--context")
    _one_line_error(*run_cli(["predict", str(tmp_path / "nowhere")])[::2], "nothing to predict")
    _one_line_error(*run_cli(["predict", str(tmp_path / "nowhere"), "--text", "x"])[::2], "does not exist")


def test_predict_inputs_names_the_missing_key_and_the_fix(cls_run: Path, qa_run: Path) -> None:
    from tailorlm.models.saved import load_saved_model
    from tailorlm.serve.predict import predict_inputs

    loaded = load_saved_model(qa_run)
    with pytest.raises(UserError) as info:
        predict_inputs(loaded, [{"question": "a?", "context": "b."}, {"question": "when?"}])
    message = str(info.value)
    assert "input 2" in message and "'context'" in message and "fix:" in message and "\n" not in message
    answered = predict_inputs(loaded, [{"id": "q1", "question": "When?", "context": "It opens at nine."}])
    assert answered[0]["id"] == "q1"


def test_predict_qa(qa_run: Path, tmp_path: Path) -> None:
    assert (qa_run / "model" / "adapter_config.json").is_file()
    context = "The Kirkwall office opens at nine on weekdays. It is closed on Sundays."
    (answer,) = _predict(str(qa_run), "--question", "When does the office open?", "--context", context)
    assert set(answer) == {"answer", "score", "start", "no_answer"}
    assert answer["no_answer"] == (answer["answer"] == "")
    if not answer["no_answer"]:
        assert context[answer["start"]:answer["start"] + len(answer["answer"])] == answer["answer"]
    file = _write_jsonl(tmp_path / "qa.jsonl", [{"question": "Where?", "context": context},
                                                {"question": "When?"}, {"context": context, "question": ""}])
    rows = _predict(str(qa_run), "--input", str(file))
    assert [(r["row"], r.get("error")) for r in rows] == [(1, None), (2, "missing_context"), (3, "empty_question")]


def test_predict_token_classification(ner_run: Path, tmp_path: Path) -> None:
    text = "my meter in Kirkwall broke on Monday"
    (row,) = _predict(str(ner_run), "--text", text)
    assert row["tokens"] == text.split() and len(row["tags"]) == len(row["tokens"])
    for entity in row["entities"]:
        assert " ".join(row["tokens"][entity["start_token"]:entity["end_token"]]) == entity["text"]
        assert row["tags"][entity["start_token"]] in (f"B-{entity['type']}", f"I-{entity['type']}")
    file = _write_jsonl(tmp_path / "ner.jsonl", [{"tokens": text.split()}, {"tokens": []}, {"text": text}])
    rows = _predict(str(ner_run), "--input", str(file))
    assert rows[0]["tags"] == rows[2]["tags"] == row["tags"], "a token list and its text get the same tags"
    assert rows[1] == {"row": 2, "tokens": [], "error": "empty_text", "detail": "'tokens' holds no words"}


def test_predict_translation(mt_run: Path, tmp_path: Path) -> None:
    (first,) = _predict(str(mt_run), "--text", "whit's the time")
    assert set(first) == {"translation"} and isinstance(first["translation"], str)
    file = _write_jsonl(tmp_path / "mt.jsonl", [{"source": "whit's the time"}, {"src": "x"}])
    rows = _predict(str(mt_run), "--input", str(file))
    assert rows[0] == {"row": 1, "source": "whit's the time", "translation": first["translation"]}, \
        "greedy decoding is deterministic; the input column is kept"
    assert rows[1]["error"] == "missing_text"


def test_predict_generation_matches_tailor_generate(gen_run: Path) -> None:
    from tailorlm.models.saved import load_saved_model
    from tailorlm.serve.predict import predict_inputs

    prompt = "Is there a blackie in glen 3?"
    (row,) = predict_inputs(load_saved_model(gen_run), [{"prompt": prompt}])
    assert set(row) == {"completion"}
    (cli_row,) = _predict(str(gen_run), "--text", prompt)
    code, stdout, stderr = run_cli(["generate", str(gen_run), "--prompt", prompt])
    assert code == 0, stderr
    assert row == cli_row and stdout.strip() == row["completion"].strip()


# ---------------------------------------------------------------------------------------------- server


@pytest.fixture(scope="module")
def server(cls_run: Path) -> Iterator[tuple[str, Any]]:
    from tailorlm.serve.server import make_server

    srv = make_server(cls_run, "127.0.0.1", 0, max_batch=3, max_body_bytes=2048)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _call(url: str, body: bytes | None = None, method: str | None = None) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with _NO_PROXY.open(request, timeout=60) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def test_server_health_and_info(server: tuple[str, Any], cls_run: Path) -> None:
    base, _ = server
    assert _call(f"{base}/health")[:2] == (200, {"status": "ok"})
    status, info, _ = _call(f"{base}/info")
    assert status == 200
    tuned = json.loads((cls_run / "metrics.json").read_text())["tuned"]
    assert info["task"] == "classification" and info["input_fields"] == ["text"]
    assert set(info["labels"]) == {"negative", "positive"} and info["max_length"] > 0
    assert info["test_metrics"]["f1_macro"] == tuned["f1_macro"] and info["test_metrics"]["n"] == tuned["n"]


def test_server_predicts_like_the_cli(server: tuple[str, Any], cls_run: Path) -> None:
    base, _ = server
    texts = ["the app was lovely and quick", "the call was rude and late"]
    body = json.dumps({"inputs": [{"text": texts[0], "id": 7}, {"text": texts[1]}]}).encode()
    status, reply, headers = _call(f"{base}/predict", body)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    cli = _predict(str(cls_run), "--text", texts[0], "--text", texts[1])
    assert reply["predictions"] == [{"id": 7} | cli[0], cli[1]]
    status, single, _ = _call(f"{base}/predict", json.dumps({"text": texts[1]}).encode())
    assert status == 200 and single["predictions"] == [cli[1]]


def test_server_answers_a_bad_input_in_its_place_and_types_are_strict(server: tuple[str, Any]) -> None:
    """One bad input in a batch gets its own error entry (as `tailor predict --input` keeps a bad row), the
    others their predictions; {"text": 42} is a mistake, not the text "42"."""
    base, _ = server
    body = json.dumps({"inputs": [{"text": "the app was lovely", "id": "a"}, {"text": 42, "id": "b"},
                                  {"txt": "no key"}]}).encode()
    status, reply, _ = _call(f"{base}/predict", body)
    assert status == 200, reply
    good, number, missing = reply["predictions"]
    assert good["id"] == "a" and "label" in good
    assert number["id"] == "b" and number["index"] == 1 and number["error"] == "bad_text"
    assert "must be a string" in number["detail"] and "label" not in number
    assert missing["index"] == 2 and missing["error"] == "missing_text"
    status, reply, _ = _call(f"{base}/predict", json.dumps({"text": 42}).encode())
    assert status == 400 and "must be a string, not a number" in reply["error"]
    status, reply, _ = _call(f"{base}/predict", json.dumps({"text": True}).encode())
    assert status == 400 and "not a boolean" in reply["error"]


@pytest.mark.parametrize(("path", "body", "method", "status", "needle"), [
    ("/predict", b"{not json", None, 400, "not valid UTF-8 JSON"),
    ("/predict", b"[1, 2]", None, 400, '{"inputs"'),
    ("/predict", b'{"inputs": []}', None, 400, "is empty"),
    ("/predict", b'{"inputs": [{"txt": "hello"}]}', None, 400, "no 'text' key"),
    ("/predict", json.dumps({"inputs": [{"text": "a b"}] * 4}).encode(), None, 413, "at most 3"),
    ("/predict", json.dumps({"text": "x" * 5000}).encode(), None, 413, "--max-body-bytes"),
    ("/nowhere", None, None, 404, "no endpoint /nowhere"),
    ("/predict", None, "GET", 405, "answers POST"),
    ("/health", b"{}", "POST", 405, "answers GET"),
])
def test_server_refuses_bad_requests_with_one_line(server: tuple[str, Any], path: str, body: bytes | None,
                                                   method: str | None, status: int, needle: str) -> None:
    base, _ = server
    got, reply, headers = _call(f"{base}{path}", body, method)
    assert got == status, reply
    assert set(reply) == {"error"} and needle in reply["error"] and "\n" not in reply["error"]
    if status == 405:
        assert headers["Allow"] in ("GET", "POST")


def test_server_hides_internal_errors(server: tuple[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import tailorlm.serve.server as server_module

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals at /home/someone/model.py")

    monkeypatch.setattr(server_module, "predict_batch", broken)
    base, _ = server
    status, reply, _ = _call(f"{base}/predict", b'{"text": "hello"}')
    assert status == 500 and "secret" not in reply["error"] and "Traceback" not in reply["error"]


def _raw(port: int, request: bytes) -> bytes:
    """What the server answers to raw bytes (or b"" when it closes without a word)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_server_answers_unknown_methods_in_json_and_drops_silent_clients(server: tuple[str, Any]) -> None:
    """(Adapted to uvicorn: an unknown method is a JSON 405 naming the route's methods, where http.server said
    501; replies are HTTP/1.1.)"""
    from tailorlm.serve.server import PredictServer

    _, srv = server
    reply = _raw(srv.server_address[1], b"BREW /predict HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405") and b"application/json" in head and b"allow: POST" in head
    assert set(json.loads(body)) == {"error"}
    patient = PredictServer(("127.0.0.1", 0), srv.loaded, max_batch=1, max_body_bytes=10, timeout_s=0.5)
    thread = threading.Thread(target=patient.serve_forever, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        assert _raw(patient.server_address[1], b"POST /predict HTTP/1.1\r\n") == b""  # headers never finish
        slow_body = _raw(patient.server_address[1],  # (HTTP/1.1 needs a Host header: h11 refuses it without)
                         b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{")
        assert slow_body.startswith(b"HTTP/1.1 408") and b"did not arrive" in slow_body
        assert time.monotonic() - started < 8
    finally:
        patient.shutdown()
        patient.server_close()


@pytest.fixture()
def bounded(cls_run: Path) -> Iterator[Any]:
    """A server with small caps and a short deadline, so the bounds show within a few seconds."""
    from tailorlm.serve.server import make_server

    srv = make_server(cls_run, "127.0.0.1", 0, max_batch=3, max_body_bytes=2048, request_timeout_s=2.0,
                      max_connections=3, max_queue=1)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=10)


def _wait_until(condition: Any, timeout_s: float) -> bool:
    stop = time.monotonic() + timeout_s
    while time.monotonic() < stop:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _drip(port: int, head: bytes, every_s: float, give_up_s: float) -> tuple[bytes, float]:
    """Send ``head``, then one byte every ``every_s`` until the server answers; (the reply up to its close,
    seconds from connecting to that close). Gives up after ``give_up_s`` (a server that never answers)."""
    started = time.monotonic()
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=give_up_s) as conn:
        conn.sendall(head)
        while time.monotonic() - started < give_up_s:
            if select.select([conn], [], [], every_s)[0]:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            elif not chunks:
                with contextlib.suppress(OSError):
                    conn.sendall(b"a")
    return b"".join(chunks), time.monotonic() - started


@pytest.mark.parametrize(("head", "needle"), [
    (b"POST /predict HTTP/1.0\r\nX-Slow: ", b"request did not arrive within the 2 s request deadline"),
    (b"POST /predict HTTP/1.0\r\nContent-Length: 500\r\n\r\n", b"body did not arrive within the 2 s"),
])
def test_server_answers_a_drip_fed_request_408_within_its_deadline(bounded: Any, head: bytes,
                                                                   needle: bytes) -> None:
    """A byte every 0.25 s never trips a per-read timeout; only a deadline on the whole request stops it."""
    reply, closed_after = _drip(bounded.server_address[1], head, every_s=0.25, give_up_s=6.0)
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert needle in reply and b"--request-timeout" in reply
    assert closed_after < 2.0 + 1.5, f"disconnected {closed_after:.1f} s after connecting (deadline 2 s)"


def _hold(port: int) -> socket.socket:
    """A connection whose headers never finish: it holds a handler until the deadline."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"POST /predict HTTP/1.0\r\n")
    return conn


def _open(server: Any) -> int:
    """Connections the server holds open (adapted to uvicorn: the event loop serves them all, so there is no
    thread per connection to count; the process's thread count is checked by the `tailor serve` test below)."""
    return len(server._uvicorn.server_state.connections)


def test_server_refuses_past_its_connection_cap_at_once_and_its_threads_stay_capped(bounded: Any) -> None:
    port = bounded.server_address[1]
    base = f"http://127.0.0.1:{port}"
    threads = threading.active_count()
    assert _wait_until(lambda: _open(bounded) == 0, 5.0)
    held = [_hold(port), _hold(port)]  # cap 3: two slow clients leave room for one normal request
    try:
        assert _wait_until(lambda: _open(bounded) == 2, 5.0)
        status, reply, _ = _call(f"{base}/predict", b'{"text": "the app was lovely"}')
        assert status == 200 and len(reply["predictions"]) == 1, reply
        held.append(_hold(port))
        assert _wait_until(lambda: _open(bounded) == 3, 5.0)
        started = time.monotonic()
        status, reply, headers = _call(f"{base}/health")
        assert status == 503 and headers["Retry-After"] == "1" and "--max-connections" in reply["error"]
        assert time.monotonic() - started < 1.5, "refused at once, not after the slow clients (deadline 2 s)"
        held += [_hold(port) for _ in range(5)]
        time.sleep(0.3)
        assert _open(bounded) <= 3 and threading.active_count() <= threads, "no thread per connection"
        refused = [_raw(port, b"GET /health HTTP/1.0\r\n\r\n") for _ in range(3)]
        assert all(r.startswith(b"HTTP/1.1 503") for r in refused), refused
        # the slow clients are dropped at their deadline, and the server answers again
        assert _wait_until(lambda: _call(f"{base}/health")[0] == 200, 4.0)
        assert _open(bounded) <= 3
    finally:
        for conn in held:
            conn.close()


def test_server_refuses_past_its_queue_at_once(bounded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One request computing, one queued (--max-queue 1): a third is told 503 + Retry-After, not made to wait."""
    import tailorlm.serve.server as server_module

    entered, release = threading.Event(), threading.Event()

    def slow_model(loaded: Any, inputs: list[Any]) -> list[dict[str, Any]]:
        entered.set()
        release.wait(10)
        return [{"label": "positive"} for _ in inputs]

    monkeypatch.setattr(server_module, "predict_batch", slow_model)
    url = f"http://127.0.0.1:{bounded.server_address[1]}/predict"
    results: list[tuple[int, Any]] = []

    def post() -> None:
        status, reply, headers = _call(url, b'{"text": "hello"}')
        results.append((status, headers.get("Retry-After"), reply))

    first = threading.Thread(target=post)
    first.start()
    assert entered.wait(5)
    others = [threading.Thread(target=post) for _ in range(2)]
    for thread in others:
        thread.start()
    refused_in_time = _wait_until(lambda: len(results) == 1, 1.5)
    release.set()
    for thread in (first, *others):
        thread.join(10)
    assert refused_in_time, "a request past the queue waited instead of being refused"
    status, retry_after, reply = results[0]
    assert (status, retry_after) == (503, "1") and "--max-queue" in reply["error"]
    assert sorted(r[0] for r in results) == [200, 200, 503]


def _threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads thread counts from /proc (Linux)")
def test_tailor_serve_process_keeps_its_threads_within_the_connection_cap(cls_run: Path) -> None:
    """The real `tailor serve` process with the CLI options: its thread count, read from /proc, grows by at most
    --max-connections however many slow clients connect, and the one past the cap is answered 503 at once."""
    import os
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "tailorlm", "serve", str(cls_run), "--port", "0", "--max-connections", "2",
         "--max-queue", "0", "--request-timeout", "3"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    held: list[socket.socket] = []
    try:
        assert process.stderr is not None
        line = ""
        for line in process.stderr:  # "serving ... on http://127.0.0.1:PORT · ..."
            if "serving" in line:
                break
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))  # type: ignore[union-attr]
        assert _call(f"http://127.0.0.1:{port}/health")[0] == 200
        idle = _threads_of(process.pid)
        held = [_hold(port) for _ in range(6)]
        time.sleep(0.5)
        assert _threads_of(process.pid) <= idle + 2
        status, reply, headers = _call(f"http://127.0.0.1:{port}/health")
        assert status == 503 and headers["Retry-After"] == "1", reply
    finally:
        for conn in held:
            conn.close()
        process.terminate()
        process.wait(timeout=20)


def test_server_start_fails_in_one_line_for_a_missing_model(tmp_path: Path) -> None:
    _one_line_error(*run_cli(["serve", str(tmp_path / "missing"), "--port", "0"])[::2], "does not exist")


# ---------------------------------------------------------------------------------------------- model card


def _front_matter(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_model_card_holds_the_run_numbers(cls_run: Path) -> None:
    card = (cls_run / "model" / "README.md").read_text(encoding="utf-8")
    front = _front_matter(card)
    assert front["library_name"] == "transformers" and front["pipeline_tag"] == "text-classification"
    assert front["tags"][:2] == ["tailorlm", "classification"]
    assert "base_model" not in front, "a local folder is no Hub id"
    metrics = json.loads((cls_run / "metrics.json").read_text())
    rows = {line.split("|")[1].strip(" *"): [c.strip(" *") for c in line.split("|")[2:-1]]
            for line in card.splitlines() if line.startswith("| ")}
    columns = ["accuracy", "precision_macro", "recall_macro", "f1_macro", "f1_weighted", "ece"]
    for name, values in (("Zero-shot", metrics["baseline"]["zero_shot"]),
                         ("Linear probe", metrics["baseline"]["linear_probe"]), ("Fine-tuned", metrics["tuned"])):
        assert rows[name] == [f"{values[k]:.3f}" for k in columns], name
    n = metrics["data"]["test"]
    assert rows["Test"] == [str(n)] and f"test split: {n} rows" in card
    assert f"tailor predict {cls_run.name}" in card and f"tailor serve {cls_run.name}" in card
    assert str(cls_run.parent) not in card and "/tmp" not in card, "no machine-local paths in the card"
    assert front["license"] == "unknown" and front["datasets"] == ["reviews.csv"]
    result = front["model-index"][0]["results"][0]
    assert result["task"]["type"] == "text-classification" and result["dataset"]["split"] == "test"
    scores = {m["type"]: m["value"] for m in result["metrics"]}
    assert scores["f1_macro"] == round(metrics["tuned"]["f1_macro"], 4)
    assert scores["accuracy"] == round(metrics["tuned"]["accuracy"], 4)


def test_the_cards_transformers_snippet_predicts_like_tailor_predict(
        cls_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's "with transformers alone" code, run as written in the model folder, gives `tailor predict`'s
    probabilities to 1e-5: the fitted temperature and the training texts' cleaning included."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(cls_run, run)
    meta_file = run / "model" / "tailor_model.json"
    meta = json.loads(meta_file.read_text())
    meta["temperature"] = 2.5  # a fitted temperature changes every probability: the snippet must apply it
    meta["clean"] = {**meta.get("clean", {}), "lowercase": True}
    meta_file.write_text(json.dumps(meta))
    code, _, stderr = run_cli(["card", str(run)])
    assert code == 0, stderr
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    text = "The   ENGINEER was  Lovely and quick"
    snippet = snippet.replace('texts = ["your text here"]', f"texts = [{text!r}]")
    monkeypatch.chdir(run / "model")
    namespace: dict[str, Any] = {}
    exec(compile(snippet, "card-snippet", "exec"), namespace)  # the card's own code
    labels = namespace["model"].config.id2label
    from_card = {labels[i]: float(v) for i, v in enumerate(namespace["probabilities"][0])}
    predicted = _predict(str(run), "--text", text)[0]["probabilities"]
    assert predicted.keys() == from_card.keys()
    for label, value in predicted.items():
        assert abs(value - from_card[label]) < 1e-5, (label, value, from_card[label])


def test_tailor_card_rewrites_it_and_adapters_say_peft(cls_run: Path, qa_run: Path, tmp_path: Path) -> None:
    card = cls_run / "model" / "README.md"
    before = card.read_text(encoding="utf-8")
    card.unlink()
    code, stdout, stderr = run_cli(["card", str(cls_run)])
    assert "README.md" in stdout
    assert code == 0, stderr
    assert card.read_text(encoding="utf-8") == before
    front = _front_matter((qa_run / "model" / "README.md").read_text(encoding="utf-8"))
    assert front["library_name"] == "peft" and front["pipeline_tag"] == "question-answering"
    assert "lora" in front["tags"]
    _one_line_error(*run_cli(["card", str(tmp_path)])[::2], "no metrics.json")


def test_base_model_hub_id() -> None:
    from tailorlm.serve.card import base_model_hub_id

    assert base_model_hub_id({"base_model_name": "minilm"}) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_model_hub_id({"base_model_name": "org/model", "base_model": "org/model"}) == "org/model"
    assert base_model_hub_id({"base_model_name": "/tmp/x", "base_model": "/tmp/x"}) is None
