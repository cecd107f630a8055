"""Cross-connection coalescing of scalar calls into shared requests.

A scalar call cannot see the next row, but concurrent calls from other connections
for the same target (a Comprehend language, a SageMaker endpoint) can share a request.

Flush rule: a call that finds no request of the coalescer in flight for its target and
whose connection is the only recent caller (alone()) is sent by its own server thread
(engine/dispatch.py, attempt_inline), so a lone connection waits for nobody and pays no
hop to a worker. Calls that arrive while a request is in flight queue up and leave
together in the next request, up to max_batch_size rows (a full batch leaves at once, on
another sender if need be). Adaptive linger: when a request returns, the callers it
answered are about to come back with their next call, and so are the other callers
active a moment ago (a caller is a server thread, i.e. a connection; one seen within
RECENT_CALLER_S counts). The sender waits for as many calls as there are such callers,
but only while they keep arriving (at most ARRIVAL_GAP_S between two arrivals), and at
most that request's own time (but at least ADAPTIVE_LINGER_FLOOR_S: a client round trip
on a loaded machine takes that long) and never more than ADAPTIVE_LINGER_CAP_S. A sender
that starts while several callers are active waits for them the same way, for up to
ADAPTIVE_LINGER_FLOOR_S. After answering a lone connection a sender does not wait at
all: that connection's next call is alone().
`linger_ms` (coalesce_linger_ms, default 0) adds a fixed wait before a sender's first
request. Identical payloads in one batch are sent once. Every waiter gets its answer
or its error, and only its own: a shared request that fails in a way that may quote
its payloads or answers (a model's error, a malformed or miscounted answer) is resent
one payload per request, so each caller hears of its own input alone; a failure that
says nothing of the payloads (no answer in time, no connection, throttling and 5xx
after their retries, told without the service's text) reaches every caller at once.
A caller that stopped waiting (timed out or killed: its future is cancelled) is
skipped, and nothing a waiter does can stop a sender: the sender count is given back
however a drain ends, so the next call always finds or starts one.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from typing import Callable

from ..errors import ServiceError
from .dispatch import CONTENT_FREE_CODES, is_service_failure

ADAPTIVE_LINGER_CAP_S = 0.02
ADAPTIVE_LINGER_FLOOR_S = 0.005
ARRIVAL_GAP_S = 0.002
RECENT_CALLER_S = 0.1
MAX_SENDERS_PER_TARGET = 4


class Coalescer:
    """Batches payloads for one target. `send(payloads)` returns one result or exception each."""

    def __init__(self, send: Callable[[list], list], submit: Callable[[Callable[[], None]], None]):
        self._send = send
        self._submit = submit  # runs a function on an engine worker thread
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._queue: deque = deque()  # (payload, max_batch_size, future)
        self._senders = 0
        self._callers: dict[int, float] = {}  # caller thread -> when it last called

    def alone(self) -> bool:
        """Notes a call from this thread; True if no request of this coalescer is being
        sent or waiting and no other connection called within RECENT_CALLER_S: the call
        would leave at once in a request of its own, so it may be sent by its caller."""
        now = time.monotonic()
        with self._lock:  # the Condition's own lock, without its Python-level __enter__
            callers = self._callers
            callers[threading.get_ident()] = now
            if self._senders or self._queue:
                return False
            # The usual lone caller: only itself in the table, nothing to forget.
            return len(callers) == 1 or self._recent_callers(now) == 1

    def call(self, payload, max_batch_size: int, linger_s: float) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        now = time.monotonic()
        with self._cond:
            self._callers[threading.get_ident()] = now
            self._queue.append((payload, max_batch_size, future))
            start = self._senders == 0 or (len(self._queue) >= self._queue[0][1]
                                           and self._senders < MAX_SENDERS_PER_TARGET)
            if start:
                self._senders += 1
            else:
                self._cond.notify()  # a lingering sender may be waiting for this call
        if start:
            self._submit(lambda: self._drain(linger_s))
        return future

    def _take(self, expected: int, linger_s: float) -> list:
        with self._cond:
            if linger_s > 0 and expected > 0:
                deadline = time.monotonic() + linger_s
                while not self._queue or len(self._queue) < min(expected, self._queue[0][1]):
                    queued = len(self._queue)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    # The first call back may take a client round trip; after it, the
                    # others come within ARRIVAL_GAP_S or are not coming.
                    self._cond.wait(min(ARRIVAL_GAP_S, remaining) if queued else remaining)
                    if len(self._queue) == queued:
                        break
            batch: list = []
            while self._queue and not batch:  # again if every caller taken had given up
                limit = self._queue[0][1]
                seen: set = set()
                while self._queue and len(seen) < limit:
                    item = self._queue.popleft()
                    # A future set running can no longer be cancelled by its waiter, so
                    # settling it below cannot fail; a cancelled one is dropped.
                    if item[2].set_running_or_notify_cancel():
                        batch.append(item)
                        seen.add(item[0])
            if not batch:
                self._senders -= 1
            return batch

    def _active_callers(self) -> int:
        with self._cond:
            return self._recent_callers(time.monotonic())

    def _recent_callers(self, now: float) -> int:
        """How many callers called within RECENT_CALLER_S (and forgets the others, so the
        table stays short). Under the lock."""
        since = now - RECENT_CALLER_S
        self._callers = {caller: at for caller, at in self._callers.items() if at >= since}
        return len(self._callers)

    def _drain(self, linger_s: float) -> None:
        finished = False  # _take gave the sender count back on an empty queue
        try:
            if linger_s > 0:
                time.sleep(linger_s)
            # A sender that starts while other callers are active (they are about to call
            # again) waits for them as after a request; a lone caller's leaves at once.
            expected = self._active_callers()
            adaptive_s = ADAPTIVE_LINGER_FLOOR_S if expected > 1 else 0.0
            while True:
                batch = self._take(expected, adaptive_s)
                if not batch:
                    finished = True
                    return
                started = time.monotonic()
                self._answer(batch)
                expected = max(len(batch), self._active_callers())
                # A lone connection sends its next call itself (alone()): nobody to wait for.
                adaptive_s = (0.0 if expected <= 1 else
                              min(ADAPTIVE_LINGER_CAP_S, max(ADAPTIVE_LINGER_FLOOR_S, time.monotonic() - started)))
        finally:
            if not finished:  # an unexpected error: the queue must not be left without a sender
                with self._cond:
                    self._senders -= 1
                    restart = bool(self._queue) and self._senders == 0
                    if restart:
                        self._senders += 1
                if restart:
                    self._submit(lambda: self._drain(0.0))

    def _answer(self, batch: list) -> None:
        """Sends one batch and settles each of its futures with its own result or error."""
        unique = list(dict.fromkeys(payload for payload, _, _ in batch))
        try:
            results = self._send(unique)
            if len(results) != len(unique):  # never guess which answer is whose
                raise RuntimeError(f"coalescer: sent {len(unique)} payloads, send returned {len(results)} results")
            by_payload = dict(zip(unique, results, strict=True))
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it
            if len(unique) == 1:
                by_payload = {unique[0]: exc}
            elif is_service_failure(exc):
                shared = _without_service_text(exc)
                by_payload = dict.fromkeys(unique, shared)
            else:
                self._resend_each(batch, unique)
                return
        for payload, _, future in batch:
            _settle(future, by_payload[payload])

    def _resend_each(self, batch: list, unique: list) -> None:
        """A failed shared request again, one payload per request: each caller then gets
        an answer or an error about its own input only. Futures are settled as their
        own answers arrive."""
        waiters: dict = {}
        for payload, _, future in batch:
            waiters.setdefault(payload, []).append(future)
        for payload in unique:
            try:
                result = self._send([payload])[0]
            except BaseException as exc:  # noqa: BLE001
                result = exc
            for future in waiters[payload]:
                _settle(future, result)


def _settle(future: concurrent.futures.Future, result) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)


def _without_service_text(exc: BaseException) -> BaseException:
    """The error as every caller of a shared request may see it: a service's own message
    ("<where> failed: <code>: <message>") could quote what the request held, so only
    "<where> failed: <code>" is kept."""
    if not isinstance(exc, ServiceError) or exc.code in CONTENT_FREE_CODES:
        return exc
    head, sep, _ = exc.sql_message.partition(f" failed: {exc.code}")
    if not sep:
        return ServiceError("the service request failed (shared with other connections' calls)", code=exc.code,
                            retryable=exc.retryable)
    return ServiceError(f"{head}{sep} (after retries; the service's message is not shown to every caller of "
                        "a shared request)", code=exc.code, retryable=exc.retryable)
