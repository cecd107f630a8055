"""Warm-ups: the SQL-only batch path.

A scalar function must answer a row before the server reads the next, so a statement
cannot batch its own calls. A warm-up aggregate can: it sees every input of a query
first, sends the distinct ones not yet cached in batches (max_batch_size rows, and the
service's byte limits), several requests in flight at once, while the scan goes on, and
leaves every answer in the result cache (and, through the shim, in the statement memo:
native/memo.h). The statement's own calls then find their answers there by their own
input. Used as

    SELECT ..., f(x) FROM t WHERE sqlml_warm_...(...) over the same FROM/WHERE ...

(docs/sql.md: "Batching"). Flush rule: a batch leaves when it holds max_batch_size distinct
new inputs or would pass the byte limit; add() blocks only while max_in_flight batches
are already out (back-pressure), so memory is bounded by the cache, not by the table.

Failure rule: the first failed batch decides, not the last. Under on_error = 'error' it
fails the statement at once (the add or result that notices it raises), whatever is
still queued or in flight. Under on_error = 'null' a failure of the service itself (no
answer in time, no connection, throttling or 5xx after their retries) stops the
warm-up: nothing more is sent or waited for, and the statement's reads of this target
that find no answer are decided at once as NULL with that warning instead of each
waiting for a service that is down (Engine.statement_failure, kept until the statement
ends). A failure about a batch's content (a model error, a miscounted answer) only
sends that batch's rows back to single calls, each to its own answer or error.
"""

from __future__ import annotations

import concurrent.futures
from array import array
from collections import deque
from itertools import accumulate, chain
from typing import Callable

from ..errors import ServiceTimeout, SqlmlError
from .cache import MISS
from .dispatch import QueryKilled, is_service_failure, wait_for


TEXT_LIMIT = 2**32 - 1  # an end offset is an unsigned 32-bit number


def _utf8(texts: list[str]):
    """(the texts' UTF-8 bytes end to end, each one's length in bytes), or None if one
    cannot be encoded (a lone surrogate). ASCII, the usual answer, in one encode."""
    joined = "".join(texts)
    if joined.isascii():
        return joined.encode("ascii"), map(len, texts)
    try:
        parts = [t.encode() for t in texts]
    except UnicodeEncodeError:
        return None
    return b"".join(parts), map(len, parts)


class AnswerList:
    """A memo lane's answers in sending order (WarmUp.results), kept as compactly as
    their kinds allow: the cache keeps its own copy of each (native/answer_map.c), so a
    list of the answer objects would cost a million of them again at the statement's
    peak. While every answer is a float: an array of doubles (8 bytes each). While every
    answer is a str: their UTF-8 bytes end to end (up to TEXT_LIMIT) and an array of
    their end offsets (4 bytes each plus the text). From the first answer that fits
    neither on: a list.

    form() gives what the shim's warm_record takes: the array, the (bytes, ends) pair, or
    the list. With compact false, always the list (answers C keeps in another form, such
    as Comprehend's, which the owner maps from the list)."""

    __slots__ = ("compact", "floats", "text", "ends", "objects")

    def __init__(self, compact: bool):
        self.compact = compact
        self.floats: array | None = None
        self.text: bytearray | None = None
        self.ends: array | None = None
        self.objects: list | None = None if compact else []

    def extend(self, answers: list) -> None:
        if not answers:
            return
        kinds = set(map(type, answers))
        if self.objects is None and self.text is None and self.floats is None:  # the first decides
            if kinds == {float}:
                self.floats = array("d")
            elif kinds == {str}:
                self.text, self.ends = bytearray(), array("I")
            else:
                self.objects = []
        if self.floats is not None:
            if kinds == {float}:
                self.floats.extend(answers)
                return
        elif self.text is not None:
            if kinds == {str}:
                encoded = _utf8(answers)
                if encoded is not None and len(self.text) + len(encoded[0]) <= TEXT_LIMIT:
                    ends = accumulate(encoded[1], initial=self.ends[-1] if self.ends else 0)
                    next(ends)
                    self.ends.extend(ends)
                    self.text += encoded[0]
                    return
        if self.objects is None:
            self.objects = list(self)
            self.floats = self.text = self.ends = None
        self.objects.extend(answers)

    def take(self) -> array | tuple | list:
        """form(), and the list starts again empty."""
        form = self.form()
        self.__init__(self.compact)
        return form

    def form(self) -> array | tuple | list:
        if self.floats is not None:
            return self.floats
        if self.text is not None:
            return (self.text, self.ends)
        return self.objects if self.objects is not None else []

    def __len__(self) -> int:
        return len(self.floats if self.floats is not None else self.ends if self.ends is not None
                   else self.objects or ())

    def __iter__(self):
        if self.floats is not None:
            return iter(self.floats)
        if self.text is not None:
            text, ends = self.text, self.ends
            return (text[start:end].decode() for start, end in zip(chain((0,), ends), ends, strict=False))
        return iter(self.objects or ())


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
        self.stopped = False  # a failure of the service: nothing more is sent or awaited
        self._fresh = engine.cache.fresh
        # add_many's payloads' answers, in the order given (MISS where a batch failed),
        # when the owner sets one here (WarmAggregate.lane).
        self.results: AnswerList | None = None

    def add(self, payload: str) -> None:
        if self.stopped:
            return
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
        while i < n and not self.stopped:
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
        if self.stopped:  # never sent: the rows' reads decide them
            self._skipped(batch)
            return
        self.in_flight.append((batch, self.engine.dispatcher.spawn(self.send, batch)))
        self.sent += len(batch)
        self._poll()
        while len(self.in_flight) >= self.engine.settings.max_in_flight and not self.stopped:
            self._reap()

    def _skipped(self, batch: list[str]) -> None:
        self.pending.difference_update(batch)
        if self.results is not None:
            self.results.extend([MISS] * len(batch))

    def _poll(self) -> None:
        """Takes the batches that are back, without waiting, so that a failure is acted
        on when it happens rather than when its turn to be waited for comes."""
        while self.in_flight and self.in_flight[0][1].done() and not self.stopped:
            self._reap()
        for _, future in self.in_flight:
            if future.done() and not future.cancelled() and isinstance(future.exception(), SqlmlError):
                self._failed(future.exception())

    def _failed(self, exc: SqlmlError) -> None:
        """Applies the failure rule (module docstring) to a failed batch."""
        self.error = self.error or exc
        if self.engine.settings.on_error != "null":
            self.stopped = True
            raise exc
        if is_service_failure(exc):
            self.stopped = True

    def _reap(self) -> None:
        batch, future = self.in_flight.popleft()
        answers = None
        timeout_s = self.engine.settings.timeout_s * 2
        try:
            answers = wait_for(future, timeout_s, f"warm-up for {self.target[0]} '{self.target[1]}'")
        except QueryKilled:
            raise
        except concurrent.futures.TimeoutError:
            self._failed(ServiceTimeout(f"warm-up for {self.target[0]} '{self.target[1]}': no answer within "
                                        f"{timeout_s:g} s"))
        except SqlmlError as exc:  # the whole batch failed: its rows fall back to single calls
            self._failed(exc)
        finally:
            self.pending.difference_update(batch)
            if self.results is not None:
                self.results.extend(answers if answers is not None and len(answers) == len(batch)
                                    else [MISS] * len(batch))

    def finish(self) -> int:
        """Sends what is left and waits for every batch (none once stopped); returns the
        inputs sent."""
        self.flush()
        while self.in_flight and not self.stopped:
            self._reap()
        while self.in_flight:  # abandoned: their answers still reach the cache if they come
            self._skipped(self.in_flight.popleft()[0])
        return self.sent
