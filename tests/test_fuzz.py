"""A bounded SQL-level fuzz over every installed sqlml function, with Hypothesis.

What a failure means: a statement that an engine must survive did something a user
must never see. The checks (tests/sqlfuzz.py): the server keeps its pid and uptime;
no connection is lost but to a KILL CONNECTION; no error says "internal error"; every
statement ends within its bound (a KILL within KILL_BOUND_S); a timeout never happens
(the fake service always answers); and an echo endpoint's answer equals each row's own
input for every return type (REAL, INT, DECIMAL, STRING), with NULLs between rows, in
every statement shape. A run collects every distinct failure, each with the shortest
statements that showed it, and fails listing them all.

Knobs: SQLML_FUZZ_SEED (default 13) picks the cases; SQLML_FUZZ_CALLS (default 3,000,
a short pass) is how many sqlml calls the two tests make together, shared 40/60 between
one connection and the storm of several connections with KILLs. `make fuzz` runs
100,000. Each test writes its numbers to .run/fuzz/<test>-<server>.json.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time

import boto3
import pymysql
import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from sqlml.engine.functions import REGISTRY
from tests import sqlfuzz
from tests.conftest import ROOT
from tests.doubles.motoserver import moto_server

SEED = int(os.environ.get("SQLML_FUZZ_SEED", "13"))
CALLS = int(os.environ.get("SQLML_FUZZ_CALLS", "3000"))
WORKERS = 4
UNKNOWN_THREAD = 1094
BUCKET = "fuzz-bucket"


@pytest.fixture(scope="module")
def fuzz_db(db):
    """The server with the fuzz's settings: a short timeout, S3 export into moto, and a
    slow echo endpoint for KILLs to land on. Yields the server's pid and uptime."""
    with moto_server() as s3_url:
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
        db.fake.reset()
        db.fake.configure(latency_ms_by_endpoint={"echo-slow*": sqlfuzz.SLOW_LATENCY_MS})
        with db.settings(timeout_s=sqlfuzz.TIMEOUT_S, s3_endpoint_url=s3_url):
            try:
                yield db
            finally:
                db.fake.reset()


class Whole:
    """The server as the fuzz found it: the same process, up all along."""

    def __init__(self, db):
        self.db = db
        self.pid = db.server.pid
        self.started = time.monotonic()
        self.uptime = self._uptime()

    def _uptime(self) -> int:
        return int(self.db.query("SHOW GLOBAL STATUS LIKE 'Uptime'")[0][1])

    def check(self, failures: sqlfuzz.Failures, when: str) -> None:
        if not self.db.server.is_alive() or self.db.server.pid != self.pid:
            failures.add("server restarted", "", f"{when}: the server (pid {self.pid}) is gone; "
                         f"log tail:\n{self.db.server.error_log_tail(30)}", [], key="down")
            pytest.fail(failures.report())
        expected = self.uptime + int(time.monotonic() - self.started) - 2
        if self._uptime() < expected:
            failures.add("server restarted", "", f"{when}: uptime went back", [], key="uptime")


def _write_summary(name: str, kind: str, stats: sqlfuzz.Stats, seconds: float, failures) -> dict:
    summary = {"test": name, "server": kind, "seed": SEED, "calls_asked": CALLS, **stats.as_dict(),
               "seconds": round(seconds, 1), "distinct_failures": len(failures.found)}
    out = ROOT / ".run" / "fuzz"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}-{kind}.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nfuzz {name} [{kind}]: {json.dumps(summary)}")
    return summary


def _hypothesis(max_examples: int, run_seed: int):
    """Generation only: a failure is recorded and the run goes on to find the others
    (shrinking would re-run statements against a server whose cache has moved on)."""
    def wrap(test):
        return seed(run_seed)(settings(max_examples=max_examples, deadline=None, database=None,
                                       phases=[Phase.explicit, Phase.generate],
                                       suppress_health_check=list(HealthCheck))(test))
    return wrap


def test_the_fuzz_covers_every_installed_function():
    installed = sqlfuzz.installed_functions()
    assert set(sqlfuzz.ROLES) == set(installed), set(sqlfuzz.ROLES) ^ set(installed)
    assert set(REGISTRY) <= set(installed)


def _case_steps(case, table: str) -> tuple[list[sqlfuzz.Step], bool]:
    if isinstance(case, sqlfuzz.EchoCase):
        return sqlfuzz.echo_steps(case, table), True
    return sqlfuzz.wild_steps(case, table), False


def test_one_connection_every_function_fails_cleanly_and_echoes_each_rows_input(fuzz_db):
    db = fuzz_db
    failures, stats = sqlfuzz.Failures(), sqlfuzz.Stats()
    whole = Whole(db)
    session = sqlfuzz.Session(db, "seq", failures, stats)
    budget = max(1, CALLS * 2 // 5)
    cases = st.one_of(sqlfuzz.echo_cases(db.kind), sqlfuzz.wild_cases(db.kind))
    started = time.monotonic()
    run = 0
    try:
        while stats.calls < budget:
            @_hypothesis(max(10, min(400, (budget - stats.calls) // 6)), SEED * 1000 + run)
            @given(cases)
            def one(case):
                steps, echo = _case_steps(case, "fz_seq")
                session.run(steps, echo)

            one()
            run += 1
            whole.check(failures, f"after {stats.statements} statements")
    finally:
        session.close()
    _write_summary("one-connection", db.kind, stats, time.monotonic() - started, failures)
    assert not failures, failures.report()


class Killer:
    """Sends KILL QUERY and KILL CONNECTION at the sessions' statements, at random
    moments, from its own connection, until stopped. A killed connection must be gone
    from the process list within KILL_BOUND_S."""

    def __init__(self, db, sessions, rng: random.Random, failures: sqlfuzz.Failures, stats: sqlfuzz.Stats):
        self.db, self.sessions, self.rng, self.failures, self.stats = db, sessions, rng, failures, stats
        self.stop = threading.Event()
        self.conn = db.connect()

    def loop(self) -> None:
        try:
            self._loop()
        except pymysql.err.MySQLError as exc:  # the killer's own connection must hold
            self.failures.add("connection lost without a KILL", "", f"the killer's connection: {exc.args}", [])

    def _loop(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.03, 0.5)):
            busy = [s for s in self.sessions if s.running_since is not None]
            target = self.rng.choice(busy or self.sessions)
            how = "CONNECTION" if self.rng.random() < 0.3 else "QUERY"
            conn_id, sent, statement = target.killed(how)
            with self.conn.cursor() as cur:
                try:
                    cur.execute(f"KILL {'QUERY ' if how == 'QUERY' else ''}{conn_id}")
                except pymysql.err.MySQLError:  # 1094: that connection had just ended
                    continue
                self.stats.add(**{f"kill_{how.lower()}": 1})
                if how == "CONNECTION":
                    self._wait_gone(cur, conn_id, sent, statement)

    def _wait_gone(self, cur, conn_id: int, sent: float, statement: str) -> None:
        # A repeated KILL says "Unknown thread id" (1094) once the thread is gone. Not the
        # process list: MySQL cannot show a statement with 4-byte characters there (3854,
        # utf8mb3), and the statements here are large.
        while True:
            try:
                cur.execute(f"KILL {conn_id}")
                gone = False
            except pymysql.err.MySQLError as exc:
                if exc.args[0] != UNKNOWN_THREAD:
                    raise
                gone = True
            waited = time.monotonic() - sent
            if gone or waited > sqlfuzz.READ_TIMEOUT_S:
                break
            time.sleep(0.02)
        if waited > sqlfuzz.KILL_BOUND_S:
            self.failures.add("KILL CONNECTION not honoured in time", "",
                              f"KILL CONNECTION {conn_id}: its thread ran on {waited:.1f} s "
                              f"(bound {sqlfuzz.KILL_BOUND_S} s)", [statement or "(between statements)"],
                              key="kill-connection")

    def close(self) -> None:
        self.conn.close()


def _recovered(db, failures: sqlfuzz.Failures) -> None:
    """After the storm, every lane answers a fresh input at once (a KILL must not have
    left an endpoint, a language or the coalescer broken)."""
    time.sleep(2 * sqlfuzz.SLOW_LATENCY_MS / 1000)  # requests of killed statements come back first
    fresh = random.Random(SEED).randint(10**6, 10**7)
    probes = [
        ("aws_sagemaker_invoke_endpoint_real", f"SELECT aws_sagemaker_invoke_endpoint_real('echo-fz', 'REAL', 1, "
         f"{fresh})", float(fresh), 2 * sqlfuzz.TIMEOUT_S),
        ("aws_sagemaker_invoke_endpoint_real", f"SELECT aws_sagemaker_invoke_endpoint_real('echo-slow', 'REAL', 1, "
         f"{fresh})", float(fresh), 2 * sqlfuzz.TIMEOUT_S),
        ("aws_comprehend_detect_sentiment", f"SELECT aws_comprehend_detect_sentiment('great {fresh}', 'en')",
         "POSITIVE", 2 * sqlfuzz.TIMEOUT_S),
    ]
    for function, sql, want, bound in probes:
        started = time.monotonic()
        try:
            got = db.scalar(sql)
        except pymysql.err.MySQLError as exc:
            got = f"error {exc.args}"
        took = time.monotonic() - started
        if got != want or took > bound:
            failures.add("no recovery after the storm", function, f"got {got!r} in {took:.1f} s, want {want!r}",
                         [sql])


def test_several_connections_with_kills_leave_the_server_whole_and_answers_right(fuzz_db):
    db = fuzz_db
    failures, stats = sqlfuzz.Failures(), sqlfuzz.Stats()
    whole = Whole(db)
    sessions = [sqlfuzz.Session(db, f"w{i}", failures, stats) for i in range(WORKERS)]
    budget = max(1, CALLS - CALLS * 2 // 5)
    # One case in twenty waits on the slow endpoint: what KILLs are for; the others keep
    # the connections busy around it.
    echo, wild = sqlfuzz.echo_cases(db.kind), sqlfuzz.wild_cases(db.kind, storm=True)
    case = st.one_of(*[echo] * 10, *[wild] * 9, sqlfuzz.echo_cases(db.kind, slow=True))
    rounds = st.tuples(st.lists(case, min_size=WORKERS * 8, max_size=WORKERS * 16), st.integers(0, 2**32))
    started = time.monotonic()
    run = 0
    try:
        while stats.calls < budget:
            @_hypothesis(max(2, min(100, (budget - stats.calls) // 300)), SEED * 1000 + 500 + run)
            @given(rounds)
            def storm(round_):
                cases, kill_seed = round_
                # A plain Random for the killer's thread: Hypothesis's own may only be drawn from here.
                killer = Killer(db, sessions, random.Random(kill_seed), failures, stats)

                def work(i: int) -> None:
                    for case in cases[i::WORKERS]:
                        steps, must = _case_steps(case, f"fz_w{i}")
                        sessions[i].run(steps, must)

                threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
                kill_thread = threading.Thread(target=killer.loop)
                for t in threads + [kill_thread]:
                    t.start()
                for t in threads:
                    t.join(sqlfuzz.READ_TIMEOUT_S * 4)
                killer.stop.set()
                kill_thread.join(30)
                killer.close()

            storm()
            run += 1
            whole.check(failures, f"after {stats.statements} statements")
        _recovered(db, failures)
        whole.check(failures, "at the end")
    finally:
        for s in sessions:
            s.close()
    _write_summary("storm", db.kind, stats, time.monotonic() - started, failures)
    assert stats.kill_query + stats.kill_connection > 0
    assert not failures, failures.report()
