"""The HTTP/1.1 connection of ``tailor serve``: uvicorn's h11 protocol with the bounds a model server needs.

uvicorn's own ``limit_concurrency`` answers a plain-text 503 after reading the request, and it has no deadline on
a request still arriving. This subclass adds, per connection:

- **connection cap**: past ``max_connections`` open connections the new one is answered ``503`` with
  ``Retry-After`` at once, before anything is read, then half-closed (what the client still sends is dropped for
  ``LINGER_S``, so it reads the 503 instead of a TCP reset);
- **deadline**: a request whose headers or body are still arriving ``request_timeout_s`` after its first byte is
  answered ``408`` and closed; a per-read timeout alone does not bound it (a byte every 20 s never trips a 30 s
  read timeout); a connection silent for ``timeout_s`` before its request is complete is closed without a word.
  Once the body is in, the deadline is the application's (the wait for the model: a 503);
- a malformed request is a JSON 400 (uvicorn's is plain text).

The event loop serves every connection, so a slow client holds only its own connection slot, never a thread.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

#: seconds a refused or timed-out connection stays half-closed, its input dropped, before it is closed
LINGER_S = 1.0
#: what a 503 tells the client to wait before trying again, in seconds
RETRY_AFTER_S = 1


def raw_reply(status: int, reason: str, payload: dict[str, Any], extra: str = "") -> bytes:
    """A complete HTTP/1.1 response with a JSON body that closes the connection."""
    body = json.dumps(payload).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nserver: tailorlm\r\ncontent-type: application/json; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\n{extra}connection: close\r\n\r\n")
    return head.encode("ascii") + body


BUSY_REPLY = raw_reply(503, "Service Unavailable", {
    "error": f"the server is at its connection cap (--max-connections); retry after {RETRY_AFTER_S} s"},
    f"retry-after: {RETRY_AFTER_S}\r\n")


class BoundedH11Protocol(H11Protocol):
    """H11Protocol with a connection cap and a request deadline (class attributes, set per server)."""

    max_connections = 32
    request_timeout_s = 60.0
    timeout_s = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._lingering = False
        self._timer: asyncio.TimerHandle | None = None
        if len(self.connections) >= self.max_connections:
            self.transport = transport
            self._linger(BUSY_REPLY)
            return
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._lingering and self not in self.connections:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._last = time.monotonic()
        if self._timer is None and not self._in_flight():
            self._arm()
        super().data_received(data)
        if self._in_flight() and not self.cycle.more_body:
            self._disarm()  # the request is in: the rest of its deadline is the application's

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle keep-alive: uvicorn's keep-alive timeout; the next request's first byte re-arms

    def send_400_response(self, msg: str) -> None:
        self._linger(raw_reply(400, "Bad Request", {"error": "malformed HTTP request; send a valid HTTP/1.1 "
                                                             "request line and headers"}))

    # ------------------------------------------------------------------ the deadline
    def _in_flight(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        now = time.monotonic()
        self._deadline = now + self.request_timeout_s
        self._last = now
        self._schedule()

    def _schedule(self) -> None:
        wake = min(self._deadline, self._last + self.timeout_s)
        self._timer = self.loop.call_later(max(0.0, wake - time.monotonic()), self._check)

    def _disarm(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()  # type: ignore[union-attr]
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._lingering or self.transport.is_closing():
            return
        in_body = self._in_flight() and self.cycle.more_body
        if self._in_flight() and not in_body:
            return
        now = time.monotonic()
        if now >= self._deadline:
            part = "body" if in_body else "request"
            self._abandon(raw_reply(408, "Request Timeout", {
                "error": f"the {part} did not arrive within the {self.request_timeout_s:g} s request deadline "
                         "(--request-timeout); send the whole request at once"}))
        elif now - self._last >= self.timeout_s and in_body:
            self._abandon(raw_reply(408, "Request Timeout", {
                "error": f"the body did not arrive within {self.timeout_s:g} s; send it at once after the headers"}))
        elif now - self._last >= self.timeout_s:
            self._abandon(b"")  # silent before its request line and headers ended: closed without a word
        else:
            self._schedule()

    def _abandon(self, reply: bytes) -> None:
        """Stop the request in progress (its handler sees a disconnect) and answer ``reply`` instead."""
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.connections.discard(self)
        self._linger(reply)

    def _linger(self, reply: bytes) -> None:
        """Write ``reply``, half-close, drop what still arrives for LINGER_S, then close."""
        self._lingering = True
        try:
            if reply:
                self.transport.write(reply)
            if self.transport.can_write_eof():
                self.transport.write_eof()
        except (OSError, RuntimeError):
            self.transport.close()
            return
        asyncio.get_event_loop().call_later(LINGER_S, self.transport.close)
