"""The coalescer's flush rule, in-process with a stand-in send: a lone caller is sent at
once, concurrent callers share requests, full batches do not wait, every waiter hears."""

import concurrent.futures
import threading
import time

import pytest

from sqlml.engine.coalesce import ADAPTIVE_LINGER_FLOOR_S, Coalescer


class Recorder:
    def __init__(self, latency_s=0.0, fail=None):
        self.batches = []
        self.latency_s = latency_s
        self.fail = fail
        self.lock = threading.Lock()

    def __call__(self, payloads):
        with self.lock:
            self.batches.append(list(payloads))
        time.sleep(self.latency_s)
        if self.fail:
            raise self.fail
        return [p * 2 for p in payloads]


@pytest.fixture
def pool():
    with concurrent.futures.ThreadPoolExecutor(32) as p:
        yield p


def test_a_lone_caller_is_sent_at_once_every_time(pool):
    send = Recorder(latency_s=0.005)
    c = Coalescer(send, pool.submit)
    waits = []
    for i in range(20):
        started = time.monotonic()
        assert c.call(i, 100, 0.0).result(5) == 2 * i
        waits.append(time.monotonic() - started - send.latency_s)
    assert send.batches == [[i] for i in range(20)]
    # A lone caller is never lingered for (a linger would cost ADAPTIVE_LINGER_FLOOR_S at
    # least); what remains is thread hand-offs.
    assert sorted(waits)[len(waits) // 2] < ADAPTIVE_LINGER_FLOOR_S, waits


def test_sixteen_concurrent_callers_share_requests_at_least_8_to_1(pool):
    send = Recorder(latency_s=0.02)
    c = Coalescer(send, pool.submit)

    def caller(w):
        return all(c.call(w * 1000 + i, 100, 0.0).result(10) == 2 * (w * 1000 + i) for i in range(20))

    with concurrent.futures.ThreadPoolExecutor(16) as callers:
        assert all(callers.map(caller, range(16)))
    calls = 16 * 20
    assert sum(len(b) for b in send.batches) == calls
    assert len(send.batches) * 8 <= calls, [len(b) for b in send.batches]


def test_a_full_batch_leaves_without_waiting_for_the_one_in_flight(pool):
    release = threading.Event()
    sent = []

    def send(payloads):
        sent.append(list(payloads))
        if len(sent) == 1:
            release.wait(5)  # the first request hangs until the test lets it go
        return payloads

    c = Coalescer(send, pool.submit)
    first = c.call("first", 3, 0.0)
    time.sleep(0.05)
    futures = [c.call(f"q{i}", 3, 0.0) for i in range(3)]  # a full batch of 3 queues behind it
    assert [f.result(2) for f in futures] == ["q0", "q1", "q2"]  # answered while the first still hangs
    assert not first.done()
    release.set()
    assert first.result(2) == "first"


def test_a_failed_request_reaches_every_waiter_of_its_batch(pool):
    send = Recorder(latency_s=0.01, fail=RuntimeError("boom"))
    c = Coalescer(send, pool.submit)
    futures = [c.call(i, 100, 0.0) for i in range(10)]
    for f in futures:
        with pytest.raises(RuntimeError, match="boom"):
            f.result(5)


def test_identical_payloads_in_one_batch_are_sent_once(pool):
    send = Recorder(latency_s=0.02)
    c = Coalescer(send, pool.submit)
    c.call("x", 100, 0.0)  # in flight: the next five queue
    futures = [c.call("y", 100, 0.0) for _ in range(5)]
    assert [f.result(5) for f in futures] == ["yy"] * 5
    assert send.batches == [["x"], ["y"]]
