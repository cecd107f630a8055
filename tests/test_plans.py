"""Kept per-statement preparation (engine/plans.py), against real servers.

A statement repeating a call site reuses its plan (Sqlml_prepare_reuse_cnt says so);
what a plan took from the settings follows a SET GLOBAL at the next statement; who may
call is asked again on every statement (a kept plan never carries a grant); and two
connections running one kept plan at once each get their own answers and counts.
"""

import threading
import types

import pymysql
import pytest

from sqlml.crossing import Prepared
from sqlml.engine.plans import MAX_KEY_BYTES, PlanCache
from tests.test_access import PASSWORD, connect_as, denied, direct_sagemaker_grant, user  # noqa: F401 (the user fixture)

REUSE = "Sqlml_prepare_reuse_cnt"


def status(db, name: str) -> int:
    return int(db.query(f"SHOW GLOBAL STATUS LIKE '{name}'")[0][1])


def test_a_repeated_statement_reuses_its_plan_and_other_constants_do_not(db, fake):
    # Each row's value as a literal (a client interpolating it): one call site all the same.
    call = "SELECT aws_sagemaker_invoke_endpoint_real('sum-plan', 'REAL', 7, {})"
    with db.connect() as conn:
        before = status(db, REUSE)
        assert [db.scalar(call.format(i), conn=conn) for i in (1, 2, 3)] == [1.0, 2.0, 3.0]
        assert status(db, REUSE) == before + 2  # the 1st planned, the next two reused
        # Another max_batch_size, return type or endpoint is another call site: planned anew.
        assert db.scalar(call.replace("7", "8").format(4), conn=conn) == 4.0
        assert db.scalar(call.replace("'REAL'", "'DOUBLE'").format(5), conn=conn) == 5.0
        assert db.scalar(call.replace("sum-plan", "sum-plan2").format(6), conn=conn) == 6.0
        assert status(db, REUSE) == before + 2
        assert db.scalar(call.replace("7", "8").format(9), conn=conn) == 9.0
        assert status(db, REUSE) == before + 3
        # A bad call is refused every time, never kept.
        for _ in range(2):
            with pytest.raises(pymysql.MySQLError, match="needs aws_sagemaker_invoke_endpoint_int"):
                db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-plan', 'INT', 7, 1)", conn=conn)
        assert status(db, REUSE) == before + 3


def memo_run(db, conn) -> tuple[list, int]:
    """A batched statement whose reads the memo answers while the cache is on."""
    before = db.status()["extended"]["memo_hit_cnt"]
    db.scalar("SELECT sqlml_cache_clear()")
    rows = db.query("SELECT n, aws_sagemaker_invoke_endpoint_real('sum-plan-memo', 'REAL', 100, n) FROM numbers "
                    "WHERE n <= 40 AND (SELECT sqlml_warm_sagemaker('sum-plan-memo', 100, n) FROM numbers "
                    "WHERE n <= 40) >= 0 ORDER BY n", conn=conn)
    return rows, db.status()["extended"]["memo_hit_cnt"] - before


def test_set_global_of_a_kept_setting_is_seen_by_the_next_statement(db, fake, reset_variables):
    expected = [(n, float(n)) for n in range(1, 41)]
    with db.connect() as conn:
        for _ in range(2):  # planned, then reused: the memo is on (the plan took the cache's settings)
            rows, hits = memo_run(db, conn)
            assert (rows, hits) == (expected, 40)
        reused = status(db, REUSE)
        db.query("SET GLOBAL sqlml_cache_enabled = OFF", conn=conn)
        rows, hits = memo_run(db, conn)
        assert (rows, hits) == (expected, 0)  # no memo without the cache, at once
        db.query("SET GLOBAL sqlml_cache_enabled = DEFAULT", conn=conn)
        rows, hits = memo_run(db, conn)
        assert (rows, hits) == (expected, 40)
        assert status(db, REUSE) == reused  # each change planned anew (memo_run's other calls are not kept)
        # The per-row policy of a kept plan follows too.
        call = "SELECT aws_sagemaker_invoke_endpoint_real('echo-plan-null', 'REAL', 1, 3)"
        fake.fail_next(3, code="ValidationError", status=400, service="sagemaker")
        with pytest.raises(pymysql.MySQLError, match="ValidationError"):
            db.query(call, conn=conn)
        db.query("SET GLOBAL sqlml_on_error = 'null'", conn=conn)
        fake.fail_next(3, code="ValidationError", status=400, service="sagemaker")
        assert db.query(call, conn=conn) == [(None,)]


INVOKE = "SELECT aws_sagemaker_invoke_endpoint_real('echo-plan-acl', 'REAL', 1, 42)"


def test_a_kept_plan_never_carries_a_grant_to_the_next_statement(db, fake, user):  # noqa: F811
    db.query(INVOKE)
    db.query(INVOKE)  # kept, and run by root
    reused = status(db, REUSE)
    with db.connect() as admin, admin.cursor() as cur:
        cur.execute(f"GRANT AWS_SAGEMAKER_ACCESS TO '{user}'@'%'")
    with connect_as(db, user) as conn:
        denied(db, conn, INVOKE)  # granted, not active
        db.query("SET ROLE AWS_SAGEMAKER_ACCESS", conn=conn)
        assert db.query(INVOKE, conn=conn) == [(42.0,)]
        assert status(db, REUSE) > reused  # the same plan root's statements used
        db.query("SET ROLE NONE", conn=conn)
        denied(db, conn, INVOKE)
        db.query("SET ROLE AWS_SAGEMAKER_ACCESS", conn=conn)
        assert db.query(INVOKE, conn=conn) == [(42.0,)]
    # A direct grant, revoked from another connection: refused at the very next statement.
    with db.connect() as admin, admin.cursor() as cur:
        cur.execute(f"REVOKE AWS_SAGEMAKER_ACCESS FROM '{user}'@'%'")
    direct_sagemaker_grant(db, user)
    with connect_as(db, user) as conn:
        assert db.query(INVOKE, conn=conn) == [(42.0,)]
        direct_sagemaker_grant(db, user, revoke=True)
        denied(db, conn, INVOKE)
        # SQL SECURITY DEFINER: the same kept call runs with the definer's rights, and
        # straight after, the caller's own call is refused again.
        with db.connect() as admin, admin.cursor() as cur:
            cur.execute("DROP FUNCTION IF EXISTS sqlml_test.definer_invoke")
            cur.execute("CREATE FUNCTION sqlml_test.definer_invoke() RETURNS DOUBLE NOT DETERMINISTIC NO SQL "
                        "SQL SECURITY DEFINER "
                        "RETURN aws_sagemaker_invoke_endpoint_real('echo-plan-acl', 'REAL', 1, 42)")
            cur.execute(f"GRANT EXECUTE ON FUNCTION sqlml_test.definer_invoke TO '{user}'@'%'")
        try:
            assert db.query("SELECT sqlml_test.definer_invoke()", conn=conn) == [(42.0,)]
            denied(db, conn, INVOKE)
        finally:
            db.query("DROP FUNCTION IF EXISTS sqlml_test.definer_invoke")


def test_two_connections_running_one_kept_plan_get_their_own_answers_and_counts(db, fake):
    select = "SELECT n, aws_sagemaker_invoke_endpoint_real('sum-plan-conc', 'REAL', 1, n) FROM numbers WHERE n {}"
    db.query(select.format("<= 310"))  # every answer cached, and the plan kept
    statements, errors = 15, []
    names = ("Aurora_ml_cache_hit_cnt", "Aurora_ml_logical_request_cnt", REUSE)
    before = [status(db, name) for name in names]

    def run(low: int) -> None:
        try:
            with db.connect() as conn:
                for i in range(statements):
                    a = low + i
                    rows = db.query(select.format(f"BETWEEN {a} AND {a + 149}"), conn=conn)
                    assert rows == [(n, float(n)) for n in range(a, a + 150)]
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(low,)) for low in (1, 140)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    db.status()  # folds every statement's tally into the counters
    rows = 2 * statements * 150
    assert [status(db, name) - b for name, b in zip(names, before, strict=True)] == [rows, rows, 2 * statements]


# ---- the cache's own bounds (pure Python: what any user's constants can cost) ----------

def _engine_stub():
    from sqlml.engine.counters import Counters

    return types.SimpleNamespace(settings_version=0, counters=Counters())


def test_the_plan_cache_is_bounded_and_keeps_the_recently_used():
    engine, cache = _engine_stub(), PlanCache(max_plans=4)
    planned = []

    def planner(_engine, name, kind, arg_types, consts):
        planned.append(consts[0])
        return lambda: Prepared(consts[0])

    def bind(value):
        return cache.bind(engine, planner, "f", 1, (0,), (value,), (value,)).call

    assert [bind(b"a"), bind(b"a")] == [b"a", b"a"] and planned == [b"a"]
    for value in (b"b", b"c", b"d", b"e", b"a", b"f"):  # "a" is used again before "f" comes
        bind(value)
    assert len(cache) == 4
    planned.clear()
    for value in (b"a", b"e", b"f", b"d"):
        bind(value)
    assert planned == []  # the 4 most recently used were kept; "b" and "c" went
    bind(b"b")
    assert planned == [b"b"]
    # A long constant is never kept; a new settings version plans again.
    for _ in range(2):
        bind(b"x" * (MAX_KEY_BYTES + 1))
    assert planned.count(b"x" * (MAX_KEY_BYTES + 1)) == 2 and len(cache) == 4
    bind(b"b")
    assert planned[-1] != b"b"  # still kept
    engine.settings_version += 1
    bind(b"b")
    assert planned[-1] == b"b"
