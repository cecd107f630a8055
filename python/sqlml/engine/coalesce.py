"""Cross-connection coalescing of scalar calls into shared requests.

A scalar call cannot see the next row, but concurrent calls from other connections
for the same target (a Comprehend language, a SageMaker endpoint) can share a request.
Flush rule: a call that finds fewer than `senders_per_target` requests in flight for
its target starts one at once, so a lone connection waits for nobody (linger_ms = 0,
the default, adds no delay at all); calls that arrive while requests are in flight
queue up and leave together in the next request, up to max_batch_size rows. Identical
payloads in one batch are sent once. Every waiter gets its answer or its error.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections import deque
from typing import Callable

SENDERS_PER_TARGET = 2


class Coalescer:
    """Batches payloads for one target. `send(payloads)` returns one result or exception each."""

    def __init__(self, send: Callable[[list], list], submit: Callable[[Callable[[], None]], None]):
        self._send = send
        self._submit = submit  # runs a function on an engine worker thread
        self._lock = threading.Lock()
        self._queue: deque = deque()  # (payload, max_batch_size, future)
        self._senders = 0

    def call(self, payload, max_batch_size: int, linger_s: float) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._queue.append((payload, max_batch_size, future))
            start = self._senders < SENDERS_PER_TARGET
            if start:
                self._senders += 1
        if start:
            self._submit(lambda: self._drain(linger_s))
        return future

    def _take(self) -> list:
        with self._lock:
            if not self._queue:
                self._senders -= 1
                return []
            limit = self._queue[0][1]
            batch, seen = [], set()
            while self._queue and len(seen) < limit:
                item = self._queue.popleft()
                batch.append(item)
                seen.add(item[0])
            return batch

    def _drain(self, linger_s: float) -> None:
        if linger_s > 0:
            time.sleep(linger_s)
        while True:
            batch = self._take()
            if not batch:
                return
            unique = list(dict.fromkeys(payload for payload, _, _ in batch))
            try:
                results = self._send(unique)
                by_payload = dict(zip(unique, results))
            except BaseException as exc:  # noqa: BLE001 - every waiter must hear of it
                for _, _, future in batch:
                    future.set_exception(exc)
                continue
            for payload, _, future in batch:
                result = by_payload[payload]
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
