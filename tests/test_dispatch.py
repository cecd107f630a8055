"""The dispatcher's bounds, without a server: at most max_in_flight requests are out at
once, whether a worker or the calling thread sends them (engine/dispatch.py), and a
request that cannot get a slot before its deadline is never sent late."""

from __future__ import annotations

import threading
import time

import pytest

from sqlml import config
from sqlml.engine.counters import Counters
from sqlml.engine.dispatch import Dispatcher, NotSent
from sqlml.errors import ServiceTimeout

TARGET = ("sagemaker", "e")


class NoConnection(Exception):
    pass


class Tracker:
    """A request that takes `seconds` and records how many were out at once."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.out = self.peak = self.sent = 0

    def __call__(self, _wait=None):
        with self.lock:
            self.out += 1
            self.sent += 1
            self.peak = max(self.peak, self.out)
        time.sleep(self.seconds)
        with self.lock:
            self.out -= 1
        return "answer"


def dispatcher(**settings) -> Dispatcher:
    return Dispatcher(config.parse({k: str(v) for k, v in settings.items()}), Counters())


def test_inline_and_worker_requests_together_stay_within_max_in_flight():
    d = dispatcher(max_in_flight=2, timeout_s=10)
    request = Tracker(0.05)
    futures = [d.submit(request, TARGET, 1) for _ in range(10)]
    not_sent = []

    def inline() -> None:
        for _ in range(5):
            try:
                d.attempt_inline(request, TARGET, time.monotonic() + 10, "test", NoConnection)
            except NotSent:
                not_sent.append(1)

    threads = [threading.Thread(target=inline) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [f.result(30) for f in futures] == ["answer"] * 10
    assert request.peak <= 2, request.peak
    assert request.sent == 10 + 15 - len(not_sent)


def test_an_inline_attempt_finding_every_slot_taken_sends_nothing():
    d = dispatcher(max_in_flight=2, timeout_s=10)
    gate = threading.Event()
    request = Tracker(0.0)

    def held(_wait=None):
        request()
        gate.wait(10)
        return "answer"

    futures = [d.submit(held, TARGET, 1) for _ in range(2)]
    deadline = time.monotonic() + 10
    while request.sent < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(NotSent):
        d.attempt_inline(request, TARGET, time.monotonic() + 10, "test", NoConnection)
    assert request.sent == 2  # nothing more went out
    gate.set()
    assert [f.result(10) for f in futures] == ["answer"] * 2
    assert d.attempt_inline(request, TARGET, time.monotonic() + 10, "test", NoConnection) == "answer"


def test_a_request_that_gets_no_slot_before_its_deadline_is_not_sent():
    d = dispatcher(max_in_flight=1, timeout_s=0.2)
    slow, late = Tracker(1.0), Tracker(0.0)
    holder = threading.Thread(target=lambda: d.attempt_inline(slow, TARGET, time.monotonic() + 5, "test",
                                                              NoConnection))
    holder.start()
    deadline = time.monotonic() + 5
    while not slow.sent and time.monotonic() < deadline:  # the only slot is taken
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(ServiceTimeout, match="no free request slot"):
        d.submit(late, TARGET, 1).result(5)
    assert time.monotonic() - started < 0.8
    assert late.sent == 0
    holder.join(5)


def test_an_inline_attempt_without_a_kept_alive_connection_sends_nothing_and_frees_its_slot():
    d = dispatcher(max_in_flight=1, timeout_s=5)

    def cold(_wait):
        raise NoConnection()

    with pytest.raises(NotSent):
        d.attempt_inline(cold, TARGET, time.monotonic() + 5, "test", NoConnection)
    assert d.attempt_inline(Tracker(0.0), TARGET, time.monotonic() + 5, "test", NoConnection) == "answer"
