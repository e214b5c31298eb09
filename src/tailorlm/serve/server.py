"""``tailor serve``: a JSON-over-HTTP server for one saved model, on FastAPI + uvicorn, with dynamic batching.

Endpoints: ``GET /health`` -> ``{"status": "ok"}``; ``GET /info`` -> what the model is (task, labels, input
fields, base model, max_length, the tuned test metrics of its run; every task of a multi-task folder);
``POST /predict`` with ``{"inputs": [{...}, ...]}`` (or one input object; ``?task=NAME`` or a ``"task"`` field for
a multi-task folder) -> ``{"predictions": [...]}``, computed by the same task code as ``tailor predict``; an
unusable input in a batch is answered in its place as ``{"index": i, "error": reason, "detail": ...}`` (only a
request with no usable input is a 400). ``GET /metrics``: Prometheus text (requests, latency histogram, batch
sizes, queue depth). ``/docs`` and ``/openapi.json``: the generated OpenAPI schema. A generation model also answers
OpenAI's ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` (serve/openai_api.py).

Model calls: requests are parsed and checked on the event loop, and their usable inputs go to one worker thread
(serve/batching.py) that gathers concurrent requests for up to ``max_wait_ms`` or ``max_batch`` inputs into one
length-sorted forward pass and answers each request with its own predictions; ``batching=False`` runs one request
per pass. At most ``max_queue`` requests wait; one more is a ``503`` with ``Retry-After`` at once.

Hardening, since a model server is often left running: it binds 127.0.0.1 unless told otherwise; bodies over
``max_body_bytes`` and batches over ``max_batch`` are refused (413) before any model work; a body that is not
JSON or not the expected shape is a 400 whose ``error`` says what is wrong and how to fix it; unknown paths are
404 and wrong methods 405; with an API key every route but ``/health`` needs ``Authorization: Bearer KEY`` (401,
no detail, constant-time comparison); no traceback ever reaches a client (it is logged here; the client gets a 500
with one line); one JSON line per request is logged (time, route, status, inputs, latency). Connections are capped
and every request has a deadline (serve/protocol.py); the wait for the model counts against it (503 past it).
SIGTERM or Ctrl+C stops accepting, finishes the requests in flight, then exits (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from tailorlm.errors import UserError
from tailorlm.models.saved import LoadedModel, load_saved_model
from tailorlm.serve.batching import Batcher, QueueFull
from tailorlm.serve.predict import partition_batch, predict_batch
from tailorlm.serve.protocol import RETRY_AFTER_S, BoundedH11Protocol
from tailorlm.serve.replies import RequestError, json_reply, parse_json, read_body
from tailorlm.tasks import get_task

log = logging.getLogger("tailorlm.serve")
access_log = logging.getLogger("tailorlm.serve.access")

#: which methods each path answers; any other path is 404, any other method on these 405
ROUTES: dict[str, tuple[str, ...]] = {"/health": ("GET",), "/info": ("GET",), "/predict": ("POST",),
                                      "/metrics": ("GET",), "/docs": ("GET",), "/openapi.json": ("GET",)}
#: the OpenAI-compatible routes, answered for generation models only
OPENAI_ROUTES: dict[str, tuple[str, ...]] = {"/v1/models": ("GET",), "/v1/chat/completions": ("POST",),
                                             "/v1/completions": ("POST",)}
#: seconds a connection may stay silent (headers or body) before it is closed
SOCKET_TIMEOUT_S = 30.0
#: seconds a whole request may take, from its first byte to the reply
REQUEST_TIMEOUT_S = 60.0
#: connections open at once; more are answered 503 at once
MAX_CONNECTIONS = 128
#: requests waiting for the model behind the pass being computed; more are answered 503 at once
MAX_QUEUE = 128
#: how long the worker waits for more requests to join a pass, in milliseconds
MAX_WAIT_MS = 5.0
#: the environment variable holding an API key when --api-key is not given
API_KEY_ENV = "TAILORLM_API_KEY"
INTERNAL_ERROR = "internal error while answering this request; the server log has the details"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class ServeSettings:
    """The limits of one server (the CLI options)."""

    max_batch: int = 64
    max_body_bytes: int = 1_048_576
    timeout_s: float = SOCKET_TIMEOUT_S
    request_timeout_s: float = REQUEST_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS
    max_queue: int = MAX_QUEUE
    max_wait_ms: float = MAX_WAIT_MS
    batching: bool = True
    api_key: str | None = None


# ---------------------------------------------------------------------------------------------- metrics


class Metrics:
    """Counters for ``/metrics`` (Prometheus text format, written by hand: no dependency)."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.latency = [0] * (len(_LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def observe(self, route: str, status: int, seconds: float) -> None:
        self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
        self.latency_sum += seconds
        index = next((i for i, b in enumerate(_LATENCY_BUCKETS) if seconds <= b), len(_LATENCY_BUCKETS))
        self.latency[index] += 1

    def render(self, batcher: Batcher) -> str:
        lines = ["# TYPE tailorlm_requests_total counter"]
        lines += [f'tailorlm_requests_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in self.requests.items()]
        lines.append("# TYPE tailorlm_request_seconds histogram")
        total = 0
        for bound, count in zip([*map(str, _LATENCY_BUCKETS), "+Inf"], self.latency, strict=True):
            total += count
            lines.append(f'tailorlm_request_seconds_bucket{{le="{bound}"}} {total}')
        lines += [f"tailorlm_request_seconds_sum {self.latency_sum:.6f}", f"tailorlm_request_seconds_count {total}"]
        sizes = batcher.stats.batch_sizes
        lines += ["# TYPE tailorlm_forward_passes_total counter", f"tailorlm_forward_passes_total {len(sizes)}",
                  "# TYPE tailorlm_batch_inputs_total counter", f"tailorlm_batch_inputs_total {sum(sizes)}",
                  "# TYPE tailorlm_queue_depth gauge", f"tailorlm_queue_depth {batcher.depth}"]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- the guard


class Guard:
    """ASGI middleware: 404/405 for unknown routes and methods, the API key, a 500 with one line for any bug,
    and one JSON access-log line per request."""

    def __init__(self, app: Any, routes: dict[str, tuple[str, ...]], settings: ServeSettings, metrics: Metrics,
                 hint: str) -> None:
        self.app, self.routes, self.settings, self.metrics, self.hint = app, routes, settings, metrics, hint

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = {"code": 500, "sent": False}

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        path = scope["path"].rstrip("/") or "/"
        refusal = self._refusal(scope, path)
        try:
            if refusal is not None:
                await refusal(scope, receive, sending)
            else:
                await self.app(scope, receive, sending)
        except Exception:  # a bug: the details stay in the server log, the client learns only that it failed
            log.exception("%s %s failed", scope["method"], path)
            if not status["sent"]:
                await json_reply(500, {"error": INTERNAL_ERROR})(scope, receive, sending)
        seconds = time.monotonic() - started
        self.metrics.observe(path if path in self.routes else "other", int(status["code"]), seconds)
        access_log.info(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "method": scope["method"], "route": path, "status": status["code"],
                                    "inputs": scope.get("state", {}).get("inputs"),
                                    "latency_ms": round(seconds * 1000, 2)}))

    def _refusal(self, scope: Any, path: str) -> Any:
        allowed = self.routes.get(path)
        if allowed is None:
            return json_reply(404, {"error": f"no endpoint {path}; use {self.hint}"})
        if scope["method"] not in allowed:
            return json_reply(405, {"error": f"{path} answers {' and '.join(allowed)}, not {scope['method']}"},
                              {"Allow": ", ".join(allowed)})
        key = self.settings.api_key
        if key and path != "/health":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + key.encode()):
                return json_reply(401, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"})
        return None


# ---------------------------------------------------------------------------------------------- /predict


def _inputs_of(payload: Any, example: str) -> list[Any]:
    """``{"inputs": [...]}`` or one input object; anything else is a 400 that shows the expected shape."""
    if isinstance(payload, dict) and "inputs" in payload:
        inputs = payload["inputs"]
        if not isinstance(inputs, list):
            raise RequestError(400, f'"inputs" must be a list of objects like {example}')
        if not inputs:
            raise RequestError(400, f'"inputs" is empty; give at least one object like {example}')
        return inputs
    if isinstance(payload, dict):
        return [payload]
    raise RequestError(400, f'expected a JSON object: {{"inputs": [{example}, ...]}} or one input {example}')


def pick_model(models: dict[str, LoadedModel], payload: Any, query_task: str | None) -> tuple[str, Any]:
    """Which model of the server answers (a multi-task folder's task: ``?task=`` or a ``"task"`` field), and the
    payload without that field."""
    task = query_task
    if isinstance(payload, dict) and isinstance(payload.get("task"), str):
        task = task or payload["task"]
        payload = {k: v for k, v in payload.items() if k != "task"}
    if "" in models:
        only = models[""]
        if task not in (None, only.task):
            raise RequestError(400, f"task '{task}': this server holds one {only.task} model; drop the task")
        return "", payload
    names = ", ".join(models)
    if task is None:
        raise RequestError(400, f"this server holds a multi-task model ({names}); pass ?task=NAME or a "
                                '"task" field')
    if task not in models:
        raise RequestError(400, f"task '{task}': not a task of this model; its tasks are: {names}")
    return task, payload


class Predictor:
    """``POST /predict``: checks on the event loop, model work in the batcher's thread, answers in input order."""

    def __init__(self, models: dict[str, LoadedModel], batcher: Batcher, settings: ServeSettings) -> None:
        self.models, self.batcher, self.settings = models, batcher, settings

    async def __call__(self, request: Request) -> Any:
        deadline = time.monotonic() + self.settings.request_timeout_s
        try:
            payload = parse_json(await read_body(request, self.settings))
            key, payload = pick_model(self.models, payload, request.query_params.get("task"))
            task = get_task(self.models[key].task)
            inputs = _inputs_of(payload, task.input_example())
            request.state.inputs = len(inputs)
            if len(inputs) > self.settings.max_batch:
                raise RequestError(413, f"{len(inputs)} inputs in one request; this server takes at most "
                                        f"{self.settings.max_batch} (--max-batch): split the batch")
            entries, good = partition_batch(task, inputs)
            predictions = await self.wait(key, [inputs[i] for i in good], deadline)
            for index, prediction in zip(good, predictions, strict=True):
                entries[index] = prediction
            return json_reply(200, {"predictions": entries})
        except RequestError as exc:
            return json_reply(exc.status, {"error": exc.message})
        except UserError as exc:
            return json_reply(400, {"error": str(exc)})
        except Exception:  # a bug: the details stay in the server log, the client learns only that it failed
            log.exception("POST /predict failed")
            return json_reply(500, {"error": INTERNAL_ERROR})

    async def wait(self, key: str, items: list[Any], deadline: float) -> list[Any]:
        try:
            future = self.batcher.submit(key, items)
        except QueueFull:
            raise RequestError(503, "the model is busy and its queue is full (--max-queue); retry after "
                                    f"{RETRY_AFTER_S} s") from None
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            raise RequestError(503, "the model stayed busy until this request's deadline (--request-timeout); "
                                    f"retry after {RETRY_AFTER_S} s") from None


def run_model(models: dict[str, LoadedModel]) -> Any:
    """What the batcher's thread runs: one pass of ``predict_batch`` over the gathered inputs of one model."""
    def run(key: str, items: list[Any]) -> list[Any]:
        return predict_batch(models[key], items)  # looked up at call time (tests replace it)

    return run


# ---------------------------------------------------------------------------------------------- the app


def build_app(models: dict[str, LoadedModel], batcher: Batcher, settings: ServeSettings) -> Any:
    """The FastAPI application serving ``models`` (one, or a multi-task folder's tasks by name)."""
    from fastapi import FastAPI
    from starlette.responses import PlainTextResponse

    app = FastAPI(title="tailorlm", description="a tailorlm model server", docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json")
    info = server_info(models)
    metrics = Metrics()
    routes = dict(ROUTES)
    predict_schema = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"inputs": {"type": "array", "items": {"type": "object"}},
                                         "task": {"type": "string"}}}}}}}

    @app.get("/health", summary="liveness")
    async def health() -> Any:
        return json_reply(200, {"status": "ok"})

    @app.get("/info", summary="what the model is and how to call it")
    async def model_information() -> Any:
        return json_reply(200, info)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Any:
        return PlainTextResponse(metrics.render(batcher), media_type="text/plain; version=0.0.4")

    app.add_api_route("/predict", Predictor(models, batcher, settings), methods=["POST"],
                      summary="predictions, one per input", openapi_extra=predict_schema)
    generation = [key for key, loaded in models.items() if loaded.task == "generation"]
    if generation:
        from tailorlm.serve.openai_api import add_openai_routes

        add_openai_routes(app, models[generation[0]], batcher, settings)
        routes |= OPENAI_ROUTES
    hint = "POST /predict, GET /info or GET /health" + (", or /v1/chat/completions" if generation else "")
    return Guard(app, routes, settings, metrics, hint)


def server_info(models: dict[str, LoadedModel]) -> dict[str, Any]:
    if "" in models:
        return model_info(models[""])
    return {"multi_task": True, "tasks": {name: model_info(loaded) for name, loaded in models.items()},
            "how": 'POST /predict?task=NAME, or a "task" field in the body'}


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """What a client needs to call the model, and how good it was on its run's test split (when known)."""
    task = get_task(loaded.task)
    meta = loaded.meta
    info: dict[str, Any] = {
        "task": loaded.task,
        "input_fields": list(task.input_fields),
        "input_example": task.input_example(),
        "base_model": meta.get("base_model_name") or meta.get("base_model"),
        "max_length": loaded.max_length,
        "peft": meta.get("peft"),
        "tailorlm_version": meta.get("tailorlm_version"),
    }
    if task.spec.has("labels") and loaded.labels:
        info["labels"] = loaded.labels
    metrics = _run_metrics(loaded.path)
    if metrics is not None:
        info["test_metrics"] = metrics
    return info


def _run_metrics(model_folder: Path) -> dict[str, Any] | None:
    """The tuned model's flat test scores from metrics.json, when the model folder is a run's model/."""
    path = model_folder.parent / "metrics.json"
    if model_folder.name != "model" or not path.is_file():
        return None
    try:
        tuned = json.loads(path.read_text(encoding="utf-8")).get("tuned") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return {k: v for k, v in tuned.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


# ---------------------------------------------------------------------------------------------- the server


class PredictServer:
    """The loaded model(s), the batcher and a uvicorn server on a socket bound at once (``server_address`` is
    known before serving); ``serve_forever()`` blocks, ``shutdown()`` (another thread) stops it gracefully."""

    def __init__(self, address: tuple[str, int], loaded: LoadedModel | dict[str, LoadedModel],
                 settings: ServeSettings | None = None, **limits: Any) -> None:
        import uvicorn

        self.settings = settings or ServeSettings(**limits)
        self.models = loaded if isinstance(loaded, dict) else {"": loaded}
        self.loaded = next(iter(self.models.values()))
        self.batcher = Batcher(run_model(self.models), max_batch=self.settings.max_batch,
                               max_wait_ms=self.settings.max_wait_ms, max_queue=self.settings.max_queue,
                               batching=self.settings.batching)
        self.app = build_app(self.models, self.batcher, self.settings)
        self.socket = _bound_socket(address, self.settings.max_connections)
        self.server_address = self.socket.getsockname()
        protocol = type("Protocol", (BoundedH11Protocol,), {
            "max_connections": self.settings.max_connections, "request_timeout_s": self.settings.request_timeout_s,
            "timeout_s": min(self.settings.timeout_s, self.settings.request_timeout_s)})
        config = uvicorn.Config(self.app, http=protocol, lifespan="off", log_config=None, access_log=False,
                                server_header=False, timeout_graceful_shutdown=int(self.settings.request_timeout_s),
                                loop="asyncio")
        self._uvicorn = uvicorn.Server(config)
        self._stopped = threading.Event()

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serve until ``shutdown()``, SIGTERM or Ctrl+C (the latter two in the main thread only)."""
        try:
            self._uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        self._uvicorn.should_exit = True
        self._stopped.wait(timeout=30)

    def server_close(self) -> None:
        self.batcher.close()
        self.socket.close()


def _bound_socket(address: tuple[str, int], backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(max(16, backlog))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def load_models(model_dir: str | Path, task: str | None = None, backend: str = "auto") -> dict[str, LoadedModel]:
    """The one model of a folder (key ""), or every task of a multi-task folder by name (``task``: only it).

    ``backend``: ``onnx`` needs an ONNX export (`tailor export --format onnx`), ``torch`` refuses one, ``auto``
    serves a folder the way it was saved."""
    from tailorlm.models.registry import read_model_meta
    from tailorlm.models.saved import model_folder
    from tailorlm.serve.onnx_export import is_onnx_export, load_onnx_model

    path = Path(model_dir)
    if backend not in ("auto", "torch", "onnx"):
        raise UserError(f"--backend {backend}: not a backend", fix="pass --backend auto, torch or onnx")
    onnx = path.exists() and is_onnx_export(model_folder(path))
    if backend == "onnx" or onnx:
        if backend == "torch":
            raise UserError(f"{path}: an ONNX export, which torch cannot load", fix="pass --backend onnx")
        return {"": load_onnx_model(path)}
    if path.exists():
        meta = read_model_meta(model_folder(path))
        if meta.get("multi_task"):
            from tailorlm.multitask.model import task_names

            names = [task] if task else task_names(meta)
            return {name: load_saved_model(path, task=name) for name in names}
    return {"": load_saved_model(path, task=task)}


def make_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, task: str | None = None,
                backend: str = "auto", **limits: Any) -> PredictServer:
    """Load the model once and bind ``host:port`` (0: a free port); call ``serve_forever()`` on the result.

    ``limits`` are :class:`ServeSettings` fields. A missing model folder or a port that cannot be bound is a
    one-line UserError before anything is served. The model's threads are torch's (the CLI's
    ``--threads`` sets them; an ONNX session takes the same count).
    """
    settings = ServeSettings(**limits)
    if settings.api_key is None and os.environ.get(API_KEY_ENV):
        settings.api_key = os.environ[API_KEY_ENV]
    models = load_models(model_dir, task, backend)
    try:
        return PredictServer((host, port), models, settings)
    except OSError as exc:
        raise UserError(f"{host}:{port}: cannot listen ({exc.strerror or exc})",
                        fix="pick another --port, or stop the program using it") from None
