"""Warm-ups: the SQL-only batch path.

A scalar function must answer a row before the server reads the next, so a statement
cannot batch its own calls. A warm-up aggregate can: it sees every input of a query
first, sends the distinct ones not yet cached in batches (max_batch_size rows, and the
service's byte limits), several requests in flight at once, while the scan goes on, and
leaves every answer in the result cache (and, through the shim, in the statement memo:
native/memo.h). The statement's own calls then find their answers there by their own
input. Used as

    SELECT ..., f(x) FROM t WHERE sqlml_warm_...(...) over the same FROM/WHERE ...

(README: "Batching"). Flush rule: a batch leaves when it holds max_batch_size distinct
new inputs or would pass the byte limit; add() blocks only while max_in_flight batches
are already out (back-pressure), so memory is bounded by the cache, not by the table.
"""

from __future__ import annotations

import concurrent.futures
from collections import deque
from typing import Callable

from ..errors import SqlmlError
from .cache import MISS


class WarmUp:
    """The state of one warm-up aggregate over one group of rows, for one target.

    Fed either per row by add() (a set lookup, a cache lookup and a list append; the
    path without a statement memo) or a chunk at a time by add_many() (the memo lane;
    such a session keeps its answers in sending order in `results`). Everything per
    batch happens in flush().
    """

    def __init__(self, engine, target: tuple[str, str], send: Callable[[list[str]], list], max_batch_size: int,
                 max_bytes: int):
        self.engine = engine
        self.target = target
        self.service, self.name = target  # cache keys are (service, name, payload)
        self.send = send
        self.max_batch_size = max_batch_size
        self.max_bytes = max_bytes
        self.batch: list[str] = []
        self.batch_bytes = 0
        self.pending: set[str] = set()  # inputs in the open batch or in flight
        self.in_flight: deque = deque()  # (inputs, future)
        self.sent = 0
        self.error: SqlmlError | None = None
        self._fresh = engine.cache.fresh
        # add_many's payloads' answers, in the order given (MISS where a batch failed),
        # when the owner sets a list here (WarmAggregate.lane).
        self.results: list | None = None

    def add(self, payload: str) -> None:
        if payload in self.pending or self._fresh((self.service, self.name, payload)):
            return
        self.pending.add(payload)
        self._append(payload)

    def _append(self, payload: str) -> None:
        size = (len(payload) if payload.isascii() else len(payload.encode("utf-8"))) + 1
        if self.batch_bytes + size > self.max_bytes and self.batch:
            self.flush()
        self.batch.append(payload)
        self.batch_bytes += size
        if len(self.batch) >= self.max_batch_size:
            self.flush()

    def add_many(self, payloads: list[str]) -> None:
        """add() for payloads known to be distinct and not cached (the memo lane: C has
        dropped rows seen before in the statement, cache.unanswered() the cached ones), a
        slice at a time instead of a call each."""
        i, n = 0, len(payloads)
        while i < n:
            room = self.max_batch_size - len(self.batch)
            chunk = payloads[i:i + room]
            i += len(chunk)
            size = sum(map(len, chunk)) + len(chunk)
            if self.batch_bytes + size * 4 > self.max_bytes:  # may not fit even by the UTF-8 bound:
                for payload in chunk:                          # measure each exactly
                    self._append(payload)
                continue
            self.batch.extend(chunk)
            self.batch_bytes += size if all(map(str.isascii, chunk)) else sum(len(p.encode()) + 1 for p in chunk)
            if len(self.batch) >= self.max_batch_size:
                self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        self.in_flight.append((batch, self.engine.dispatcher.spawn(self.send, batch)))
        self.sent += len(batch)
        while len(self.in_flight) >= self.engine.settings.max_in_flight:
            self._reap()

    def _reap(self) -> None:
        batch, future = self.in_flight.popleft()
        answers = None
        try:
            answers = future.result(timeout=self.engine.settings.timeout_s * 2)
        except concurrent.futures.TimeoutError:
            self.error = self.error or SqlmlError(f"warm-up for {self.target[0]} '{self.target[1]}': no answer "
                                                  f"within {self.engine.settings.timeout_s * 2:g} s")
        except SqlmlError as exc:  # the whole batch failed: its rows fall back to single calls
            self.error = self.error or exc
        finally:
            self.pending.difference_update(batch)
            if self.results is not None:
                self.results += answers if answers is not None and len(answers) == len(batch) else [MISS] * len(batch)

    def finish(self) -> int:
        """Sends what is left and waits for every batch; returns the inputs sent."""
        self.flush()
        while self.in_flight:
            self._reap()
        return self.sent
