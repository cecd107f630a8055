"""Sends service requests, with bounded retries, at most `max_in_flight` at once.

A request runs on one of `max_in_flight` worker threads while the calling server thread
waits on its future with the GIL released, except a lone scalar call's first attempt
over a kept-alive connection (attempt_inline): that is sent from the calling thread,
which saves the hop to a worker and back (bench/bench_scalar.py measures it), and
waits for the answer in KILL_POLL_S slices (InlineWait). Connecting, backoff and
retries stay on worker threads: a connect cannot be cut short by a KILL. Every request
holds one of max_in_flight slots while it is out. Every wait has a deadline (timeout_s
covers all attempts and their backoff) and is cut in KILL_POLL_S slices, between which the
server's kill flag is read: KILL QUERY ends a waiting statement within a slice, not at
its deadline (wait_for). Throttling, 5xx and connection failures are retried with
exponential backoff and jitter, at most max_attempts times in all.
"""

from __future__ import annotations

import concurrent.futures
import functools
import queue
import random
import time
from typing import Callable, TypeVar

from .. import host
from ..config import Settings
from ..errors import ServiceError, ServiceTimeout, SqlmlError
from .counters import Counters

T = TypeVar("T")
THROTTLE_CODES = frozenset({"ThrottlingException", "TooManyRequestsException", "ModelNotReadyException",
                            "ProvisionedThroughputExceededException"})
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 2.0
KILL_POLL_S = 0.1
# Failures whose message the engine writes itself, naming no payload or answer.
CONTENT_FREE_CODES = frozenset({"Timeout", "ConnectionError", "NoCredentials"})
ER_QUERY_INTERRUPTED = 1317


class QueryKilled(SqlmlError):
    """The statement was killed while it waited: never turned into NULL by on_error."""

    sql_errno = ER_QUERY_INTERRUPTED


def is_service_failure(exc: BaseException) -> bool:
    """The service is slow, down, throttling or failing (after the retries): the same for
    any request, rather than a failure about what one request held."""
    return isinstance(exc, ServiceError) and (exc.code in CONTENT_FREE_CODES or exc.retryable)


def wait_for(future: concurrent.futures.Future, timeout_s: float, where: str):
    """future.result(timeout_s), read in KILL_POLL_S slices (the GIL released while it
    waits), raising QueryKilled as soon as the calling statement is killed. Raises
    concurrent.futures.TimeoutError when timeout_s passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            return future.result(timeout=max(0.0, min(KILL_POLL_S, remaining)))
        except concurrent.futures.TimeoutError:
            if host.killed():
                future.cancel()
                raise QueryKilled(f"{where}: query killed while waiting for the service") from None
            if remaining <= KILL_POLL_S:
                raise


class InlineWait:
    """How an inline attempt waits for its answer (LeanClient.send's object-form wait):
    until the caller's deadline, in KILL_POLL_S slices. The transport waits itself (with
    libcurl in C, without the GIL) and calls check() only after a slice that ended
    without the answer, so an answer within the first slice costs no Python. The rest of
    the answer is read within the deadline, without reading the kill flag: a service
    sends an answer this size in one piece."""

    __slots__ = ("deadline", "where", "timeout_s")
    slice_s = KILL_POLL_S

    def __init__(self, deadline: float, where: str, timeout_s: float):
        self.deadline = deadline
        self.where = where
        self.timeout_s = timeout_s

    def check(self, expired: bool) -> None:
        """Raises QueryKilled once the statement is killed, ServiceTimeout once the
        deadline has passed (expired); returns to keep waiting."""
        if host.killed():
            raise QueryKilled(f"{self.where}: query killed while waiting for the service")
        if expired:
            raise ServiceTimeout(f"{self.where}: no answer within timeout_s={self.timeout_s:g} s")


class Slots:
    """max_in_flight request slots, as tokens in a queue.SimpleQueue: taking one and
    giving it back are C calls, where threading.BoundedSemaphore runs Python code under a
    Condition, twice per request on the scalar path. Every take is paired with one give
    (try/finally), so no bound check is needed."""

    def __init__(self, count: int):
        self._tokens: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(count):
            self._tokens.put(None)
        # The inline attempt's pair, bound C calls without a Python frame: take_now()
        # takes a slot at once or raises queue.Empty; give() gives one back.
        self.take_now = self._tokens.get_nowait
        self.give = functools.partial(self._tokens.put, None)

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        """Takes a slot: at once (blocking=False), or within timeout seconds; whether one was taken."""
        try:
            self._tokens.get(blocking, timeout)
        except queue.Empty:
            return False
        return True

    def release(self) -> None:
        self._tokens.put(None)


class NotSent(Exception):
    """attempt_inline sent nothing (no free slot, no kept-alive connection): send the
    request from a worker instead."""


class Dispatcher:
    def __init__(self, settings: Settings, counters: Counters):
        self._counters = counters
        self._count_request = counters.incrementer("actual_request_cnt")
        self._count_response = counters.incrementer("actual_response_cnt")
        self._settings = settings
        self._pool = self._new_pool(settings)
        # Every attempt holds a slot while its request is out, inline or on a worker.
        self._slots = Slots(settings.max_in_flight)

    @staticmethod
    def _new_pool(settings: Settings) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_in_flight,
                                                     thread_name_prefix="sqlml-request")

    def update(self, settings: Settings) -> None:
        if settings.max_in_flight != self._settings.max_in_flight:
            old, self._pool = self._pool, self._new_pool(settings)
            old.shutdown(wait=False)
            self._slots = Slots(settings.max_in_flight)  # holders give theirs back to the old one
        self._settings = settings

    def spawn(self, fn: Callable[..., T], *args) -> concurrent.futures.Future:
        """Runs fn(*args) on a worker thread; the future holds its value or error."""
        return self._pool.submit(fn, *args)

    def submit(self, request: Callable[[], T], target: tuple[str, str], rows: int) -> concurrent.futures.Future:
        """Sends request() from a worker thread, with retries; the future holds its value or error."""
        settings = self._settings
        deadline = time.monotonic() + settings.timeout_s
        return self._pool.submit(self.attempts, request, target, rows, deadline, settings)

    def wait(self, future: concurrent.futures.Future, deadline: float, target: tuple[str, str], where: str):
        """The future's value, or ServiceTimeout once the deadline passes."""
        try:
            return wait_for(future, deadline - time.monotonic(), where)
        except concurrent.futures.TimeoutError:
            future.cancel()
            self._counters.request_done(target, 0, 0.0, timed_out=True)
            raise ServiceTimeout(f"{where}: no answer within timeout_s={self._settings.timeout_s:g} s") from None

    def deadline(self) -> float:
        return time.monotonic() + self._settings.timeout_s

    @property
    def settings(self) -> Settings:
        return self._settings

    def attempt_inline(self, request: Callable[..., T], target: tuple[str, str], deadline: float, where: str,
                       no_connection: type[Exception], tally=None, args: tuple = ()) -> T:
        """The first attempt of a one-row request, sent from the calling thread:
        request(*args, wait) with wait an InlineWait up to the deadline. Raises NotSent
        if nothing was sent (no free slot, or request raised no_connection); if the
        attempt failed in a way worth retrying, the retries run as request(*args, None) on a
        worker and the caller waits for them as for any request. An answered attempt is
        counted in tally (an engine/tally.py InlineTally) if given, else at once."""
        settings, slots = self._settings, self._slots
        try:
            slots.take_now()
        except queue.Empty:
            raise NotSent() from None
        started = time.monotonic()
        try:
            result = request(*args, InlineWait(deadline, where, settings.timeout_s))
        except no_connection:
            raise NotSent() from None
        except QueryKilled:
            self._count_request()
            self._counters.request_done(target, 1, time.monotonic() - started, error=True, inline=True)
            raise
        except ServiceError as exc:
            self._count_request()
            self._count_failure(target, 1, started, exc, inline=True)
            backoff = _backoff_s(1)
            if _final(exc, 1, settings, backoff, deadline):
                raise
        else:
            if tally is not None:
                tally.done(time.monotonic() - started)
            else:
                self._count_request()
                self._counters.request_done(target, 1, time.monotonic() - started, inline=True)
                self._count_response()
            return result
        finally:
            slots.give()
        future = self._pool.submit(self._retry_after, backoff, lambda: request(*args, None), target, deadline, settings)
        return self.wait(future, deadline, target, where)

    def _retry_after(self, backoff: float, request: Callable[[], T], target: tuple[str, str], deadline: float,
                     settings: Settings) -> T:
        time.sleep(backoff)
        return self.attempts(request, target, 1, deadline, settings, first=2)

    def attempts(self, request: Callable[[], T], target: tuple[str, str], rows: int, deadline: float,
                 settings: Settings | None = None, first: int = 1) -> T:
        """Runs request() on this thread until it succeeds, fails for good, or time runs
        out; `first` is the number of its first attempt (2: one was made already)."""
        settings = settings or self._settings
        attempt = first - 1
        while True:
            attempt += 1
            if attempt > 1:
                self._counters.add("retry_request_cnt")
            slots = self._slots
            if not slots.acquire(timeout=max(0.0, deadline - time.monotonic())):
                # Every slot held until the deadline (requests to a hung service): its caller
                # has stopped waiting; nothing is sent late.
                raise ServiceTimeout(f"{target[0]} '{target[1]}': no free request slot within "
                                     f"timeout_s={settings.timeout_s:g} s (max_in_flight={settings.max_in_flight})")
            self._count_request()
            started = time.monotonic()
            failure = None
            try:
                result = request()
            except ServiceError as exc:
                failure = exc
            finally:
                slots.release()
            if failure is None:
                self._counters.request_done(target, rows, time.monotonic() - started)
                self._count_response()
                return result
            self._count_failure(target, rows, started, failure)
            backoff = _backoff_s(attempt)
            if _final(failure, attempt, settings, backoff, deadline):
                raise failure
            time.sleep(backoff)

    def _count_failure(self, target: tuple[str, str], rows: int, started: float, exc: ServiceError,
                       inline: bool = False) -> None:
        self._counters.request_done(target, rows, time.monotonic() - started, error=True,
                                    throttled=exc.code in THROTTLE_CODES, timed_out=exc.code == "Timeout",
                                    inline=inline)


def _backoff_s(attempt: int) -> float:
    """The pause before attempt + 1: exponential, capped, with jitter."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def _final(exc: ServiceError, attempt: int, settings: Settings, backoff_s: float, deadline: float) -> bool:
    """Whether a failed attempt is the last: not worth retrying, the attempts used up, or
    no time left for the pause and another try."""
    return not exc.retryable or attempt >= settings.max_attempts or time.monotonic() + backoff_s >= deadline
