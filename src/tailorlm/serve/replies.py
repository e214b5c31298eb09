"""The small pieces of an HTTP answer shared by the server's routes (serve/server.py, serve/openai_api.py)."""

from __future__ import annotations

import json
import logging
from typing import Any

from tailorlm.serve.protocol import RETRY_AFTER_S

log = logging.getLogger("tailorlm.serve")


class RequestError(Exception):
    """A request the server refuses: an HTTP status and the one-line ``error`` the client gets."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_reply(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    """Strict JSON (no NaN), UTF-8, nosniff; a 503 says when to retry."""
    from starlette.responses import Response

    try:
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str).encode("utf-8")
    except ValueError:  # NaN or a cycle: strict JSON clients must never get it
        log.exception("the reply is not strict JSON")
        status, body = 500, json.dumps({"error": "internal error: the reply could not be encoded"}).encode()
    extra = {"X-Content-Type-Options": "nosniff", **(headers or {})}
    if status == 503:
        extra["Retry-After"] = str(RETRY_AFTER_S)
    return Response(body, status_code=status, media_type="application/json; charset=utf-8", headers=extra)


async def read_body(request: Any, settings: Any) -> bytes:
    """The body, refused before reading when it has no Content-Length or a size over ``settings.max_body_bytes``."""
    if request.headers.get("transfer-encoding"):
        raise RequestError(411, "chunked bodies are not accepted; send a Content-Length header")
    raw = request.headers.get("content-length")
    length = int(raw) if raw is not None and raw.isdigit() else -1
    if length < 0:
        raise RequestError(411, "a POST needs a Content-Length header with the body's size in bytes")
    if length > settings.max_body_bytes:  # uvicorn drops the unread body once the reply is sent
        raise RequestError(413, f"the body has {length:,} bytes; this server takes at most "
                                f"{settings.max_body_bytes:,} (--max-body-bytes): send fewer inputs per request")
    from starlette.requests import ClientDisconnect

    try:
        return await request.body()
    except ClientDisconnect:  # the deadline passed while it arrived (the protocol answered 408) or it left
        raise RequestError(408, "the body did not arrive in time") from None


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = f"{exc.msg} at line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) \
            else type(exc).__name__
        raise RequestError(400, f"the body is not valid UTF-8 JSON ({reason}); send "
                                '{"inputs": [{...}, ...]} with Content-Type: application/json') from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
