"""The coalescer's flush rule, in-process with a stand-in send: a lone caller is sent at
once, concurrent callers share requests, full batches do not wait, every waiter hears."""

import concurrent.futures
import threading
import time

import pymysql
import pytest

from sqlml.engine import coalesce
from sqlml.engine.coalesce import ADAPTIVE_LINGER_FLOOR_S, Coalescer
from sqlml.errors import ServiceError


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


def test_a_call_is_alone_only_with_no_request_out_and_no_other_recent_caller(pool, monkeypatch):
    """alone(): the engine then sends the call from its own thread (dispatch.attempt_inline)."""
    monkeypatch.setattr(coalesce, "RECENT_CALLER_S", 1.0)  # room for a slow machine's scheduling
    send = Recorder(latency_s=0.3)
    c = Coalescer(send, pool.submit)
    assert c.alone()
    assert c.alone()  # the same caller again
    future = pool.submit(lambda: c.call(1, 100, 0.0).result(5))  # another thread, its request out
    deadline = time.monotonic() + 5
    while not send.batches and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not c.alone()  # a request of the coalescer is out: this call could join the next one
    assert future.result(5) == 2
    assert not c.alone()  # that other caller called a moment ago: it may call again
    time.sleep(1.05)  # RECENT_CALLER_S passes
    assert c.alone()


def test_many_callers_gone_quiet_are_forgotten(pool):
    c = Coalescer(Recorder(), pool.submit)
    for _ in range(200):
        pool.submit(c.alone).result(5)  # pool threads, each a caller once
    time.sleep(coalesce.RECENT_CALLER_S + 0.05)
    assert c.alone()
    assert len(c._callers) == 1


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


# ---- faults: cancelled and failed waiters, and what each caller may see (issues 13.1, 12.2)


def test_a_cancelled_waiter_does_not_stop_the_next_call(pool):
    """The dispatcher cancels a caller's future when it stops waiting (timeout, KILL); the
    answer that comes later must not break the sender: the next call is answered."""
    release = threading.Event()

    def send(payloads):
        release.wait(5)
        return [p * 2 for p in payloads]

    c = Coalescer(send, pool.submit)
    abandoned = c.call(1, 100, 0.0)
    time.sleep(0.05)
    queued = c.call(2, 100, 0.0)  # behind the first request; its caller gives up too
    abandoned.cancel()
    assert queued.cancel()
    release.set()
    assert c.call(3, 100, 0.0).result(2) == 6
    assert c.call(4, 100, 0.0).result(2) == 8


def test_a_failed_request_whose_waiter_gave_up_does_not_stop_the_next_call(pool):
    release = threading.Event()
    calls = []

    def send(payloads):
        calls.append(list(payloads))
        if len(calls) == 1:
            release.wait(5)
            raise ServiceError("s failed: Timeout", code="Timeout")
        return payloads

    c = Coalescer(send, pool.submit)
    first = c.call("a", 100, 0.0)
    time.sleep(0.05)
    queued = c.call("b", 100, 0.0)  # waits behind the first request, then gives up too
    first.cancel()
    assert queued.cancel()
    release.set()
    assert c.call("c", 100, 0.0).result(2) == "c"
    assert ["b"] not in calls  # a caller that gave up is not sent


def test_a_shared_request_that_fails_on_one_callers_input_is_resent_per_caller(pool):
    """Like a model that cannot read one row: the request fails quoting that row. Each
    caller gets its own answer, the bad row's caller its own error, and nobody a message
    with another caller's input."""
    gate = threading.Event()
    sent = []

    def send(payloads):
        sent.append(list(payloads))
        if len(sent) == 1:
            gate.wait(5)  # hold the first request so that the others queue and share one
        bad = [p for p in payloads if p.startswith("SECRET")]
        if bad:
            raise ServiceError(f"s failed: ModelError: could not convert string to float: {bad[0]!r}",
                               code="ModelError")
        return [float(p) for p in payloads]

    c = Coalescer(send, pool.submit)
    first = c.call("1", 100, 0.0)
    futures = {p: c.call(p, 100, 0.0) for p in ("2", "SECRET-of-user-1", "3")}
    gate.set()
    assert first.result(2) == 1.0
    assert futures["2"].result(2) == 2.0 and futures["3"].result(2) == 3.0
    with pytest.raises(ServiceError, match="SECRET-of-user-1"):
        futures["SECRET-of-user-1"].result(2)
    assert ["2", "SECRET-of-user-1", "3"] in sent  # the shared request really happened


def test_a_shared_service_failure_reaches_every_caller_without_the_services_text(pool):
    gate = threading.Event()
    sent = []

    def send(payloads):
        sent.append(list(payloads))
        if len(sent) == 1:
            gate.wait(5)
            return payloads
        raise ServiceError(f"SageMaker InvokeEndpoint (endpoint 'e') failed: InternalFailure: body {payloads}",
                           code="InternalFailure", retryable=True)

    c = Coalescer(send, pool.submit)
    c.call("x", 100, 0.0)
    futures = [c.call(p, 100, 0.0) for p in ("p1", "p2", "p3")]
    gate.set()
    for f in futures:
        with pytest.raises(ServiceError) as err:
            f.result(2)
        assert "InternalFailure" in err.value.sql_message
        assert not any(p in err.value.sql_message for p in ("p1", "p2", "p3")), err.value.sql_message
    assert len(sent) == 2  # the service is failing: not asked again per caller


def test_concurrent_callers_see_only_their_own_errors_through_the_server(db, fake):
    """Issue 12.2 through real connections: one connection sends an input the model cannot
    read while three others send numbers to the same endpoint; their calls share requests.
    Every call of the others succeeds, and no message quotes the first one's input."""
    fake.configure(latency_ms_by_endpoint={"sum-iso": 20})
    secret = "SECRET-of-user-1"
    seen: dict[int, list[str]] = {i: [] for i in range(4)}
    start = threading.Barrier(4)

    def user(i: int) -> int:
        ok = 0
        with db.connect() as conn:
            start.wait()
            for k in range(30):
                arg = secret if i == 0 else str(7000 + 100 * i + k)
                try:
                    value = db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('sum-iso', 'REAL', 100, %s)",
                                      (arg,), conn=conn)
                    assert value == float(arg)
                    ok += 1
                except pymysql.err.MySQLError as exc:
                    seen[i].append(exc.args[1])
        return ok

    with concurrent.futures.ThreadPoolExecutor(4) as users:
        answered = list(users.map(user, range(4)))
    assert answered[1:] == [30, 30, 30], {i: seen[i][:2] for i in seen}
    assert len(seen[0]) == 30 and all(secret in m for m in seen[0])
    assert not any(secret in m for i in (1, 2, 3) for m in seen[i])
    assert max(fake.stats()["items_by_endpoint"]["sum-iso"]) > 1  # calls did share requests
