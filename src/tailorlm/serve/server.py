"""``tailor serve``: a small JSON-over-HTTP server for one saved model, on the standard library alone.

Endpoints: ``GET /health`` -> ``{"status": "ok"}``; ``GET /info`` -> what the model is (task, labels, input
fields, base model, max_length, the tuned test metrics of its run); ``POST /predict`` with
``{"inputs": [{...}, ...]}`` (or one input object) -> ``{"predictions": [...]}``, computed by the same task code
as ``tailor predict``; an unusable input in a batch is answered in its place as ``{"index": i, "error": reason,
"detail": ...}`` (only a request with no usable input is a 400).

Hardening, since a model server is often left running: it binds 127.0.0.1 unless told otherwise; bodies over
``max_body_bytes`` and batches over ``max_batch`` are refused (413) before any model work; a body that is not
JSON or not the expected shape is a 400 whose ``error`` says what is wrong and how to fix it; unknown paths are
404 and wrong methods 405; one lock lets a single forward pass run at a time (torch already uses every core, and
requests interleaving on one model only add memory); and no traceback ever reaches a client: it is logged here, the
client gets a 500 with one line.

Bounds, so that no client (slow, silent or many) can exhaust the process:

- **connections**: at most ``max_connections`` are handled at once, one thread each; a connection past the cap is
  answered ``503`` with ``Retry-After`` at once by the accepting thread, which starts no thread for it, so the
  server's thread count never exceeds the cap (plus its own accept thread);
- **queue**: at most ``max_queue`` requests wait for the model lock behind the one being computed; one more is a
  ``503`` with ``Retry-After`` at once, instead of an ever longer line;
- **deadline**: the whole request (headers, body, the wait for the model, the reply) has ``request_timeout_s``.
  A per-read socket timeout alone does not bound a request: a client sending one byte every 20 s never trips a
  30 s read timeout. Every read is therefore given the time left to the deadline; past it the client gets ``408``
  and the connection is closed. A client silent for ``timeout_s`` is dropped sooner.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tailorlm.errors import UserError
from tailorlm.models.saved import LoadedModel, load_saved_model
from tailorlm.serve.predict import predict_batch
from tailorlm.tasks import get_task

log = logging.getLogger("tailorlm.serve")

#: which methods each path answers; any other path is 404, any other method on these 405
ROUTES: dict[str, tuple[str, ...]] = {"/health": ("GET",), "/info": ("GET",), "/predict": ("POST",)}
#: seconds a connection may stay silent (headers or body) before it is closed
SOCKET_TIMEOUT_S = 30.0
#: seconds a whole request may take, from its connection to the last byte of the reply
REQUEST_TIMEOUT_S = 60.0
#: connections handled at once (one thread each); more are answered 503 at once
MAX_CONNECTIONS = 32
#: requests waiting for the model lock behind the one computing; more are answered 503 at once
MAX_QUEUE = 8
#: what a 503 tells the client to wait before trying again, in seconds
RETRY_AFTER_S = 1
#: a refused body up to this many bytes is read and dropped, so the client reads the 413 instead of a reset
DRAIN_LIMIT = 4 * 1_048_576
#: seconds a connection refused or timed out stays half-closed (read and dropped), so the client reads the
#: 503/408 instead of a TCP reset caused by bytes it sent after the server stopped reading
LINGER_S = 1.0
#: refused connections lingering at once; past this the oldest is closed at once (a flood cannot pile up sockets)
MAX_LINGERING = 256


class DeadlinePassed(Exception):
    """A request's deadline passed while the server was still reading it (not a TimeoutError on purpose:
    http.server drops those silently, and a client past the deadline is told 408)."""


class DeadlineReader(socket.SocketIO):
    """A socket reader that gives each read only the time left to the request's deadline.

    The socket timeout is set before every read to the smaller of the per-read timeout and the time left, so a
    client dripping bytes cannot stretch a request past its deadline however often it sends.
    """

    def __init__(self, sock: socket.socket, deadline: float, read_timeout_s: float) -> None:
        super().__init__(sock, "rb")
        self._deadline = deadline
        self._read_timeout_s = read_timeout_s

    def readinto(self, buffer: Any) -> int | None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise DeadlinePassed
        self._sock.settimeout(min(self._read_timeout_s, left))
        try:
            return super().readinto(buffer)
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise DeadlinePassed from None
            raise


class PredictServer(ThreadingHTTPServer):
    """The HTTP server holding the one loaded model, its lock and the request limits."""

    daemon_threads = True  # Ctrl+C ends the process even while a slow client is connected
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], loaded: LoadedModel, *, max_batch: int, max_body_bytes: int,
                 timeout_s: float = SOCKET_TIMEOUT_S, request_timeout_s: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS, max_queue: int = MAX_QUEUE) -> None:
        self.loaded = loaded
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.timeout_s = timeout_s
        self.request_timeout_s = request_timeout_s
        self.model_lock = threading.Lock()
        self.connection_slots = threading.BoundedSemaphore(max_connections)
        self.model_admission = threading.BoundedSemaphore(max_queue + 1)  # the one computing and those queued
        self.request_queue_size = max(5, max_connections)  # listen backlog: let the cap, not the kernel, refuse
        self.info = model_info(loaded)
        self._lingering: collections.deque[tuple[float, socket.socket]] = collections.deque()
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, PredictHandler)

    # ------------------------------------------------------------------ the connection cap
    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread only while a connection slot is free; otherwise 503 from this thread."""
        if not self.connection_slots.acquire(blocking=False):
            log.warning("%s: %s", client_address[0], "refused: connection cap reached (--max-connections)")
            self._refuse_busy(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connection_slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connection_slots.release()

    def _refuse_busy(self, request: socket.socket) -> None:
        """Answer 503 without reading the request, then half-close; never blocks the accept loop."""
        try:
            request.setblocking(False)
            _drop_available(request)
            request.send(_BUSY_REPLY)  # a few hundred bytes: always fits an empty socket buffer
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        self._lingering.append((time.monotonic() + LINGER_S, request))
        while len(self._lingering) > MAX_LINGERING:
            self._lingering.popleft()[1].close()

    def service_actions(self) -> None:
        """Close refused connections whose linger time is over (called by serve_forever's loop)."""
        now = time.monotonic()
        while self._lingering and self._lingering[0][0] <= now:
            sock = self._lingering.popleft()[1]
            with contextlib.suppress(OSError):
                _drop_available(sock)
            sock.close()

    def server_close(self) -> None:
        super().server_close()
        while self._lingering:
            self._lingering.popleft()[1].close()


def _drop_available(sock: socket.socket) -> None:
    """Read and drop what a non-blocking socket already holds (bounded), so closing it sends no reset."""
    with contextlib.suppress(BlockingIOError, InterruptedError):
        for _ in range(16):
            if not sock.recv(65536):
                return


def _busy_reply() -> bytes:
    body = json.dumps({"error": "the server is at its connection cap (--max-connections); retry after "
                                f"{RETRY_AFTER_S} s"}).encode()
    head = ("HTTP/1.0 503 Service Unavailable\r\nServer: tailorlm\r\n"
            "Content-Type: application/json; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {RETRY_AFTER_S}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


_BUSY_REPLY = _busy_reply()


class RequestError(Exception):
    """A request the server refuses: an HTTP status and the one-line ``error`` the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PredictHandler(BaseHTTPRequestHandler):
    server: PredictServer
    server_version = "tailorlm"
    sys_version = ""  # no Python version in the Server header
    protocol_version = "HTTP/1.0"  # one request per connection: no keep-alive state to guard

    def setup(self) -> None:
        self.deadline = time.monotonic() + self.server.request_timeout_s
        self.timeout = self.server.timeout_s  # StreamRequestHandler sets it on the socket
        self.timed_out = False
        super().setup()
        self.rfile.close()  # the plain reader: every read goes through the deadline instead
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, self.deadline, self.server.timeout_s))

    def handle(self) -> None:
        try:
            super().handle()
        except DeadlinePassed:  # headers still arriving at the deadline (the body's case is a RequestError)
            self._answer_late()
        if self.timed_out:
            self._linger()

    def _answer_late(self) -> None:
        for name in ("command", "request_version", "requestline"):  # unset when the request line never finished
            if getattr(self, name, None) is None:
                setattr(self, name, "")
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._send(408, {"error": self._late_message("request")})
            self.wfile.flush()

    def _late_message(self, part: str) -> str:
        self.timed_out = True
        return (f"the {part} did not arrive within the {self.server.request_timeout_s:g} s request deadline "
                "(--request-timeout); send the whole request at once")

    def _linger(self) -> None:
        """Half-close after a 408 and drop what the client still sends for a moment, so it reads the 408."""
        with contextlib.suppress(OSError):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(LINGER_S)
            stop = time.monotonic() + LINGER_S
            while time.monotonic() < stop and self.connection.recv(65536):
                pass

    def _left_s(self) -> float:
        return self.deadline - time.monotonic()

    # ------------------------------------------------------------------ methods
    def do_GET(self) -> None:  # http.server's naming
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_GET  # answered 405 (or 404) by _handle

    def _handle(self) -> None:
        status, payload = self._answer()
        try:
            self._send(status, payload)
        except OSError as exc:  # the client went away; nothing left to tell it
            log.info("%s %s: client gone before the reply (%s)", self.command, self.path, exc)

    def _answer(self) -> tuple[int, dict[str, Any]]:
        try:
            path = self._route()
            if path == "/health":
                return 200, {"status": "ok"}
            if path == "/info":
                return 200, self.server.info
            return 200, {"predictions": self._predict(self._read_inputs())}
        except RequestError as exc:
            return exc.status, {"error": exc.message}
        except Exception:  # a bug: the details stay in the server log, the client learns only that it failed
            log.exception("%s %s failed", self.command, self.path)
            return 500, {"error": "internal error while answering this request; the server log has the details"}

    def _route(self) -> str:
        path = urlsplit(self.path).path.rstrip("/") or "/"
        allowed = ROUTES.get(path)
        if allowed is None:
            raise RequestError(404, f"no endpoint {path}; use POST /predict, GET /info or GET /health")
        if self.command not in allowed:
            self._allow = ", ".join(allowed)
            raise RequestError(405, f"{path} answers {' and '.join(allowed)}, not {self.command}")
        return path

    # ------------------------------------------------------------------ predict
    def _read_inputs(self) -> list[Any]:
        body = self._read_body()
        try:
            payload = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            reason = f"{exc.msg} at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) \
                else type(exc).__name__
            raise RequestError(400, f"the body is not valid UTF-8 JSON ({reason}); send "
                                    '{"inputs": [{...}, ...]} with Content-Type: application/json') from None
        inputs = _inputs_of(payload, self.server.info["input_example"])
        if len(inputs) > self.server.max_batch:
            raise RequestError(413, f"{len(inputs)} inputs in one request; this server takes at most "
                                    f"{self.server.max_batch} (--max-batch): split the batch")
        return inputs

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "chunked bodies are not accepted; send a Content-Length header")
        raw = self.headers.get("Content-Length")
        try:
            length = int(raw) if raw is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            raise RequestError(411, "a POST /predict needs a Content-Length header with the body's size in bytes")
        if length > self.server.max_body_bytes:
            self._drain(length)
            raise RequestError(413, f"the body has {length:,} bytes; this server takes at most "
                                    f"{self.server.max_body_bytes:,} (--max-body-bytes): send fewer inputs per request")
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            raise RequestError(408, f"the body did not arrive within {self.server.timeout_s:g} s; send it at once "
                                    "after the headers") from None
        except DeadlinePassed:
            self.close_connection = True
            raise RequestError(408, self._late_message("body")) from None
        if len(body) < length:
            raise RequestError(400, f"the body ended after {len(body)} of {length} bytes; send the whole body")
        return body

    def _drain(self, length: int) -> None:
        """Read and drop a refused body that is not huge, so the client is not reset while it is still sending."""
        self.close_connection = True
        if length > DRAIN_LIMIT:
            return
        left = length
        try:
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    return
                left -= len(chunk)
        except OSError:
            return

    def _predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        """One forward pass at a time; a full queue, or a wait past the deadline, is a 503 at once."""
        if not self.server.model_admission.acquire(blocking=False):
            raise RequestError(503, "the model is busy and its queue is full (--max-queue); retry after "
                                    f"{RETRY_AFTER_S} s")
        try:
            if not self.server.model_lock.acquire(timeout=max(0.0, self._left_s())):
                raise RequestError(503, "the model stayed busy until this request's deadline (--request-timeout);"
                                        f" retry after {RETRY_AFTER_S} s")
            try:
                return predict_batch(self.server.loaded, inputs)
            finally:
                self.server.model_lock.release()
        except UserError as exc:
            raise RequestError(400, str(exc)) from None
        finally:
            self.server.model_admission.release()

    # ------------------------------------------------------------------ replies and logs
    def _send(self, status: int, payload: dict[str, Any]) -> None:
        try:
            body = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
        except ValueError:  # NaN or a cycle: strict JSON clients must never get it
            log.exception("%s %s: the reply is not strict JSON", self.command, self.path)
            status, body = 500, json.dumps({"error": "internal error: the reply could not be encoded"}).encode()
        self.connection.settimeout(max(1.0, min(self.server.timeout_s, self._left_s())))  # the reply is bounded too
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        if status == 405:
            self.send_header("Allow", getattr(self, "_allow", ""))
        if status == 503:
            self.send_header("Retry-After", str(RETRY_AFTER_S))
        if self.close_connection or status >= 400:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (a malformed request line, headers too long) as JSON too, never HTML."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._send(code, {"error": message or self.responses.get(code, ("error",))[0]})

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
        log.info("%s %s", self.address_string(), format % args)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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


def make_server(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, *, max_batch: int = 64,
                max_body_bytes: int = 1_048_576, timeout_s: float = SOCKET_TIMEOUT_S,
                request_timeout_s: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                max_queue: int = MAX_QUEUE) -> PredictServer:
    """Load the model once and bind ``host:port`` (0: a free port); call ``serve_forever()`` on the result.

    A missing model folder or a port that cannot be bound is a one-line UserError before anything is served.
    """
    loaded = load_saved_model(model_dir)
    try:
        return PredictServer((host, port), loaded, max_batch=max_batch, max_body_bytes=max_body_bytes,
                             timeout_s=min(timeout_s, request_timeout_s), request_timeout_s=request_timeout_s,
                             max_connections=max_connections, max_queue=max_queue)
    except OSError as exc:
        raise UserError(f"{host}:{port}: cannot listen ({exc.strerror or exc})",
                        fix="pick another --port, or stop the program using it") from None
