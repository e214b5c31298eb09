"""Dynamic batching for ``tailor serve``: concurrent requests gathered into one forward pass, in one worker thread.

The event loop never runs the model. A request's usable inputs are handed to :class:`Batcher` (``submit``), which
returns an asyncio future. One worker thread takes the oldest waiting request, then gathers more of the same task
until ``max_batch`` inputs are collected or ``max_wait_ms`` has passed since that oldest request arrived, runs them
as *one* call of ``run`` (the task's predict, which sorts the texts by length into padded batches), and answers
each request's future with its own slice of the predictions (``loop.call_soon_threadsafe``). torch releases the
GIL while it computes, so the loop keeps accepting and parsing requests meanwhile; while the model is busy the
queue fills, so the next pass takes what has gathered at once.

Bounded: at most ``max_queue`` requests wait (the ones being computed do not count); one more is refused at once
(:class:`QueueFull`, a 503 with ``Retry-After``). ``batching=False`` takes one request per pass, as the old server
did, for comparison. Other work for the model (a chat completion, a streamed one) is a *job*: a function run alone
in the same thread, so the model is never used by two threads at once.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already."""


@dataclass
class _Pending:
    key: str  # which model (a multi-task folder's task name, or "" for a single model)
    items: list[Any]  # the request's usable inputs; empty for a job
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)
    job: Callable[[], Any] | None = None


@dataclass
class BatchStats:
    """What the worker did: forward passes, and how many inputs each took (for tests, logs and /metrics)."""

    passes: int = 0
    batch_sizes: list[int] = field(default_factory=list)


class Batcher:
    """One worker thread running ``run(key, items) -> predictions`` over gathered requests."""

    def __init__(self, run: Callable[[str, list[Any]], list[Any]], *, max_batch: int = 64, max_wait_ms: float = 5.0,
                 max_queue: int = 128, batching: bool = True) -> None:
        self.run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000
        self.max_queue = max_queue
        self.batching = batching
        self.stats = BatchStats()
        self._waiting: collections.deque[_Pending] = collections.deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name="tailorlm-model", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        return len(self._waiting)

    def submit(self, key: str, items: list[Any]) -> asyncio.Future[Any]:
        """A future of the predictions of ``items`` (in order); QueueFull when ``max_queue`` requests wait."""
        return self._put(_Pending(key, items, *self._future()))

    def submit_job(self, job: Callable[[], Any]) -> asyncio.Future[Any]:
        """A future of ``job()``, run alone in the model's thread."""
        return self._put(_Pending("", [], *self._future(), job=job))

    @staticmethod
    def _future() -> tuple[asyncio.Future[Any], asyncio.AbstractEventLoop]:
        loop = asyncio.get_running_loop()
        return loop.create_future(), loop

    def _put(self, pending: _Pending) -> asyncio.Future[Any]:
        with self._cond:
            if self._stopped:
                raise QueueFull
            if len(self._waiting) >= self.max_queue:
                raise QueueFull
            self._waiting.append(pending)
            self._cond.notify()
        return pending.future

    def close(self) -> None:
        """Stop after the pass in progress; waiting requests are cancelled."""
        with self._cond:
            self._stopped = True
            left = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for pending in left:
            pending.loop.call_soon_threadsafe(_cancel, pending.future)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the worker thread
    def _work(self) -> None:
        while True:
            group = self._gather()
            if group is None:
                return
            self._answer(group)

    def _gather(self) -> list[_Pending] | None:
        """The next pass: the oldest request and, when batching, the others of its key that fit and arrive in
        time; a job alone."""
        with self._cond:
            while not self._waiting and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            first = self._waiting.popleft()
            group = [first]
            if first.job is not None or not self.batching:
                return group
            size = len(first.items)
            stop = first.arrived + self.max_wait_s
            while size < self.max_batch:
                size = self._take_fitting(first.key, group, size)
                left = stop - time.monotonic()
                if size >= self.max_batch or left <= 0 or self._stopped:
                    break
                self._cond.wait(left)
            return group

    def _take_fitting(self, key: str, group: list[_Pending], size: int) -> int:
        """Move the waiting requests of ``key`` that still fit into ``group`` (in arrival order)."""
        kept: collections.deque[_Pending] = collections.deque()
        while self._waiting:
            pending = self._waiting.popleft()
            if pending.job is None and pending.key == key and size + len(pending.items) <= self.max_batch:
                group.append(pending)
                size += len(pending.items)
            else:
                kept.append(pending)
        self._waiting.extendleft(reversed(kept))
        return size

    def _answer(self, group: list[_Pending]) -> None:
        first = group[0]
        try:
            if first.job is not None:
                result: Any = first.job()
                first.loop.call_soon_threadsafe(_resolve, first.future, result)
                return
            items = [item for pending in group for item in pending.items]
            self.stats.passes += 1
            self.stats.batch_sizes.append(len(items))
            predictions = self.run(first.key, items)
        except BaseException as exc:  # the requests learn it failed; the thread lives on
            for pending in group:
                pending.loop.call_soon_threadsafe(_fail, pending.future, exc)
            return
        start = 0
        for pending in group:
            part = predictions[start:start + len(pending.items)]
            start += len(pending.items)
            pending.loop.call_soon_threadsafe(_resolve, pending.future, part)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _cancel(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.cancel()
