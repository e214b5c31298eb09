"""`tailor serve` on FastAPI + uvicorn: dynamic batching, the OpenAI-compatible endpoint, multi-task routing, the
API key, the OpenAPI schema and /metrics. The runs are the tiny random ones of tests/test_serve.py."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import run_cli
from tests.test_serve import _call, cls_run, gen_run  # noqa: F401  (module fixtures reused)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _start(model_dir: Path, **limits: Any) -> Any:
    from tailorlm.serve.server import make_server

    srv = make_server(model_dir, "127.0.0.1", 0, **limits)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.thread = thread
    return srv


def _stop(srv: Any) -> None:
    srv.shutdown()
    srv.server_close()
    srv.thread.join(timeout=10)


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every forward pass the server makes (predict_batch wrapped)."""
    import tailorlm.serve.server as server_module

    sizes: list[int] = []
    real = server_module.predict_batch

    def counting(loaded: Any, inputs: list[Any]) -> list[dict[str, Any]]:
        sizes.append(len(inputs))
        return real(loaded, inputs)

    monkeypatch.setattr(server_module, "predict_batch", counting)
    return sizes


TEXTS = [f"the {w} was {a} and {b}" for w, a, b in zip(
    ["app", "call", "bill", "meter", "engineer", "visit", "letter", "line"],
    ["lovely", "rude", "awful", "quick", "late", "kind", "slow", "fine"],
    ["quick", "late", "slow", "kind", "fine", "awful", "lovely", "rude"], strict=True)]


def _concurrent(url: str, texts: list[str]) -> list[tuple[int, dict[str, Any]]]:
    barrier = threading.Barrier(len(texts))

    def post(text: str) -> tuple[int, dict[str, Any]]:
        barrier.wait()
        status, reply, _ = _call(url, json.dumps({"text": text, "id": text}).encode())
        return status, reply

    with ThreadPoolExecutor(len(texts)) as pool:
        return list(pool.map(post, texts))


def test_batching_gathers_concurrent_requests_into_one_pass_with_the_same_answers(
        cls_run: Path, counted: list[int]) -> None:  # noqa: F811
    """8 requests arriving together (max wait 300 ms) share one or two forward passes, not eight; each gets its own
    answer, equal (to 1e-5) to what one-at-a-time serving gives it."""
    batched = _start(cls_run, max_wait_ms=300.0, max_batch=64)
    try:
        url = f"http://127.0.0.1:{batched.server_address[1]}/predict"
        together = _concurrent(url, TEXTS)
    finally:
        _stop(batched)
    assert all(status == 200 for status, _ in together), together
    assert sum(counted) == len(TEXTS) and len(counted) <= 2, counted
    counted.clear()
    alone = _start(cls_run, batching=False)
    try:
        url = f"http://127.0.0.1:{alone.server_address[1]}/predict"
        single = [_call(url, json.dumps({"text": t, "id": t}).encode())[1] for t in TEXTS]
    finally:
        _stop(alone)
    assert counted == [1] * len(TEXTS)
    for (_, reply), one in zip(together, single, strict=True):
        (got,), (want,) = reply["predictions"], one["predictions"]
        assert got["id"] == want["id"] and got["label"] == want["label"]
        for label, p in want["probabilities"].items():
            assert abs(got["probabilities"][label] - p) < 1e-5


def test_batching_off_runs_one_request_per_pass(cls_run: Path, counted: list[int]) -> None:  # noqa: F811
    srv = _start(cls_run, batching=False, max_wait_ms=300.0)
    try:
        replies = _concurrent(f"http://127.0.0.1:{srv.server_address[1]}/predict", TEXTS[:4])
    finally:
        _stop(srv)
    assert [s for s, _ in replies] == [200] * 4 and counted == [1, 1, 1, 1]


def _first_answered(futures: list[Future[Any]], count: int, *, within_s: float) -> list[Future[Any]]:
    """The first ``count`` futures to finish, whichever they are: concurrent requests reach the server in any order."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        finished = [f for f in futures if f.done()]
        if len(finished) >= count:
            return finished[:count]
        wait([f for f in futures if not f.done()], timeout=0.1, return_when=FIRST_COMPLETED)
    raise AssertionError(f"only {sum(f.done() for f in futures)} of {len(futures)} requests answered in {within_s} s")


def test_a_full_batching_queue_is_503_with_retry_after(cls_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The model busy, --max-queue 2 waiting: the fourth and later requests are refused at once."""
    import tailorlm.serve.server as server_module

    entered, release = threading.Event(), threading.Event()

    def slow(loaded: Any, inputs: list[Any]) -> list[dict[str, Any]]:
        entered.set()
        release.wait(10)
        return [{"label": "positive"} for _ in inputs]

    monkeypatch.setattr(server_module, "predict_batch", slow)
    srv = _start(cls_run, max_queue=2, max_wait_ms=0.0)
    url = f"http://127.0.0.1:{srv.server_address[1]}/predict"
    try:
        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(_call, url, b'{"text": "a b"}')
            assert entered.wait(5)
            rest = [pool.submit(_call, url, b'{"text": "a b"}') for _ in range(5)]
            refused = _first_answered(rest, 3, within_s=10)  # answered while the model is still busy
            release.set()
            done = [first.result(10), *(f.result(10) for f in rest if f not in refused)]
    finally:
        release.set()
        _stop(srv)
    assert [s for s, _, _ in done] == [200, 200, 200]
    refused = [f.result() for f in refused]
    for status, reply, headers in refused:
        assert status == 503 and headers["Retry-After"] == "1" and "--max-queue" in reply["error"]


def test_api_key_guards_every_route_but_health(cls_run: Path) -> None:  # noqa: F811
    import urllib.request

    srv = _start(cls_run, api_key="s3cret")
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        assert _call(f"{base}/health")[0] == 200
        for path, body in (("/info", None), ("/predict", b'{"text": "a b"}'), ("/metrics", None),
                           ("/openapi.json", None), ("/docs", None)):
            status, reply, _ = _call(f"{base}{path}", body)
            assert status == 401 and reply == {"error": "unauthorized"}, path
        request = urllib.request.Request(f"{base}/predict", data=b'{"text": "a b"}',
                                         headers={"Authorization": "Bearer s3cret"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30) as response:
            assert response.status == 200
        wrong = urllib.request.Request(f"{base}/info", headers={"Authorization": "Bearer s3cre"})
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.build_opener(urllib.request.ProxyHandler({})).open(wrong, timeout=30)
        assert info.value.code == 401
    finally:
        _stop(srv)


def test_openapi_schema_docs_and_metrics(cls_run: Path) -> None:  # noqa: F811
    import urllib.request

    srv = _start(cls_run)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        status, schema, _ = _call(f"{base}/openapi.json")
        assert status == 200 and {"/predict", "/info", "/health"} <= set(schema["paths"])
        with opener.open(f"{base}/docs", timeout=30) as response:
            assert b"swagger" in response.read().lower()
        _call(f"{base}/predict", b'{"inputs": [{"text": "a b"}, {"text": "c d"}]}')
        with opener.open(f"{base}/metrics", timeout=30) as response:
            text = response.read().decode()
        assert 'tailorlm_requests_total{route="/predict",status="200"} 1' in text
        assert "tailorlm_batch_inputs_total 2" in text and "tailorlm_queue_depth 0" in text
    finally:
        _stop(srv)


# ---------------------------------------------------------------------------------------------- OpenAI


def test_the_openai_client_gets_a_completion_and_a_stream(gen_run: Path,  # noqa: F811
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import openai

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    srv = _start(gen_run)
    base = f"http://127.0.0.1:{srv.server_address[1]}/v1"
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=60)
    try:
        (model,) = client.models.list().data
        assert model.id == gen_run.name
        messages = [{"role": "user", "content": "Is there a blackie in glen 3?"}]
        reply = client.chat.completions.create(model=model.id, messages=messages, max_tokens=5, temperature=0)
        text = reply.choices[0].message.content
        assert isinstance(text, str) and reply.choices[0].finish_reason in ("stop", "length")
        assert reply.usage.completion_tokens <= 5 and reply.usage.prompt_tokens > 0
        stream = client.chat.completions.create(model=model.id, messages=messages, max_tokens=5, temperature=0,
                                                stream=True)
        chunks = list(stream)
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        assert streamed.strip() == text.strip(), "greedy: the stream spells the same answer"
        completion = client.completions.create(model=model.id, prompt="glen", max_tokens=3, temperature=0)
        assert isinstance(completion.choices[0].text, str)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=model.id, messages=messages, temperature=7)
        assert "'temperature'" in info.value.body["message"]
    finally:
        client.close()
        _stop(srv)


def test_openai_routes_are_404_for_a_classifier(cls_run: Path) -> None:  # noqa: F811
    srv = _start(cls_run)
    try:
        status, reply, _ = _call(f"http://127.0.0.1:{srv.server_address[1]}/v1/models")
        assert status == 404 and "no endpoint /v1/models" in reply["error"]
    finally:
        _stop(srv)


# ---------------------------------------------------------------------------------------------- multi-task


@pytest.fixture(scope="module")
def multitask_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    import pandas as pd

    from tests.conftest import sentiment_rows
    from tests.test_task_regression import scored_rows

    tmp = tmp_path_factory.mktemp("serve-mt")
    sent, score = tmp / "sent.csv", tmp / "score.csv"
    pd.DataFrame(sentiment_rows(60)).to_csv(sent, index=False)
    pd.DataFrame(scored_rows(60)).to_csv(score, index=False)
    split = {"validation": 0.2, "test": 0.25}
    recipe = {"output_dir": str(tmp / "run"), "model": {"name": str(tiny_model_dir)},
              "tasks": [{"name": "sentiment", "task": "classification",
                         "data": {"train": str(sent), "split": split}},
                        {"name": "score", "task": "regression",
                         "data": {"train": str(score), "label_column": "score", "split": split}}],
              "training": {"batch_size": 16, "learning_rate": 4e-3, "warmup": 0.0,
                           "early_stopping_patience": None, "epochs": 1},
              "multitask": {"steps": 8}}
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    code, _, stderr = run_cli(["run", str(path)])
    assert code == 0, stderr
    return tmp / "run"


def test_a_multi_task_folder_serves_each_task_by_name(multitask_run: Path) -> None:
    from tailorlm.models.saved import load_saved_model
    from tailorlm.serve.predict import predict_inputs

    srv = _start(multitask_run)
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        status, info, _ = _call(f"{base}/info")
        assert status == 200 and info["multi_task"] and set(info["tasks"]) == {"sentiment", "score"}
        assert info["tasks"]["sentiment"]["task"] == "classification"
        assert info["tasks"]["score"]["task"] == "regression"
        body = json.dumps({"text": "the app was lovely"}).encode()
        status, by_query, _ = _call(f"{base}/predict?task=sentiment", body)
        assert status == 200 and "label" in by_query["predictions"][0]
        status, by_field, _ = _call(f"{base}/predict", json.dumps({"task": "score", "inputs": [
            {"text": "the app was lovely"}]}).encode())
        assert status == 200
        want = predict_inputs(load_saved_model(multitask_run, task="score"), [{"text": "the app was lovely"}])
        assert by_field["predictions"] == json.loads(json.dumps(want))
        status, reply, _ = _call(f"{base}/predict", body)
        assert status == 400 and "?task=NAME" in reply["error"] and "sentiment" in reply["error"]
        status, reply, _ = _call(f"{base}/predict?task=nope", body)
        assert status == 400 and "its tasks are: sentiment, score" in reply["error"]
    finally:
        _stop(srv)


def test_shutdown_finishes_the_request_in_flight(cls_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """What SIGTERM does to `tailor serve` (uvicorn's graceful shutdown, here started by shutdown()): the request
    being computed is answered 200, then the server stops and refuses new connections."""
    import socket
    import time

    import tailorlm.serve.server as server_module

    entered = threading.Event()
    real = server_module.predict_batch

    def slow(loaded: Any, inputs: list[Any]) -> list[dict[str, Any]]:
        entered.set()
        time.sleep(1.0)
        return real(loaded, inputs)

    monkeypatch.setattr(server_module, "predict_batch", slow)
    srv = _start(cls_run)
    port = srv.server_address[1]
    with ThreadPoolExecutor(2) as pool:
        answer = pool.submit(_call, f"http://127.0.0.1:{port}/predict", b'{"text": "the app was lovely"}')
        assert entered.wait(10)
        stopping = pool.submit(srv.shutdown)
        status, reply, _ = answer.result(timeout=20)
        stopping.result(timeout=30)
    srv.server_close()
    assert status == 200 and "label" in reply["predictions"][0]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
