"""Attacks on MySQL's statement rewriter by low-privilege users (issue 12, items 1 and 3).

The rewriter keeps a registry of the functions made with Aurora's DDL (sqlml_functions.tsv
in the datadir) and adds warm-ups that send a statement's inputs to a function's endpoint
in batches. Each test below is an attack as a reviewer ran it, through PyMySQL, with users
the test creates. A failure means one user can change what another user's statement does
(where its values are sent), what the registry holds, or what every statement costs.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pymysql
import pytest

pytestmark = pytest.mark.server("mysql")

VICTIM_DB, ATTACKER_DB = "sec_t", "sec_a"
ALIAS = "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME"
ROWS = [1.5, 2.0, 3.25, 4.0, 5.5, 6.0, 7.75, 8.0]
VICTIM_SQL = f"SELECT {VICTIM_DB}.score(v) FROM {VICTIM_DB}.r WHERE {VICTIM_DB}.score(v) > 0 ORDER BY v"
IDENTIFIER = re.compile(r"[A-Za-z0-9_$]{1,64}")


def registry_lines(db) -> list[str]:
    datadir = Path(db.scalar("SELECT @@datadir"))
    path = datadir / "sqlml_functions.tsv"
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line and not line.startswith("#")]


def registered(db, name: str) -> list[str]:
    """The registry lines naming `name` (in any field before the definition)."""
    return [line for line in registry_lines(db) if name in line.split("\t")[:-1]]


def status(db, name: str) -> int:
    # LIKE without the Sqlml_ prefix: a statement naming sqlml_* is itself looked at.
    rows = db.query(f"SHOW GLOBAL STATUS LIKE '%{name.removeprefix('Sqlml_')}'")
    assert rows, f"status variable {name} is missing"
    return int(rows[0][1])


def endpoints_requested(fake) -> list[str]:
    return [entry["endpoint"] for entry in fake.stats()["log"]]


@pytest.fixture
def world(db, fake):
    """sec_t: the victim's schema, with a plain stored function score(x) = 2x and a
    table r; the victim may read it and holds the SageMaker role (so a warm-up would be
    allowed to send their values); sec_attacker has USAGE only; sec_owner has all rights
    on its own schema sec_a (and may call SageMaker) and none on sec_t."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL sqlml_rewrite = ON")
        for name in ("sec_victim", "sec_attacker", "sec_owner"):
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        for schema in (VICTIM_DB, ATTACKER_DB):
            cur.execute(f"DROP DATABASE IF EXISTS {schema}")
            cur.execute(f"CREATE DATABASE {schema}")
        cur.execute(f"CREATE TABLE {VICTIM_DB}.r (v DOUBLE)")
        cur.executemany(f"INSERT INTO {VICTIM_DB}.r VALUES (%s)", [(v,) for v in ROWS])
        cur.execute(f"CREATE FUNCTION {VICTIM_DB}.score(x REAL) RETURNS REAL DETERMINISTIC NO SQL RETURN x * 2")
        cur.execute("CREATE USER 'sec_victim'@'%' IDENTIFIED BY 'pw'")
        cur.execute(f"GRANT SELECT, EXECUTE ON {VICTIM_DB}.* TO 'sec_victim'@'%'")
        cur.execute("GRANT AWS_SAGEMAKER_ACCESS TO 'sec_victim'@'%'")
        cur.execute("ALTER USER 'sec_victim'@'%' DEFAULT ROLE AWS_SAGEMAKER_ACCESS")
        cur.execute("CREATE USER 'sec_attacker'@'%' IDENTIFIED BY 'pw'")
        cur.execute("CREATE USER 'sec_owner'@'%' IDENTIFIED BY 'pw'")
        cur.execute(f"GRANT ALL ON {ATTACKER_DB}.* TO 'sec_owner'@'%'")
        # Its functions run as their definer: it may call SageMaker, to any endpoint it likes.
        cur.execute("GRANT SQLML_SAGEMAKER_INVOKE ON *.* TO 'sec_owner'@'%'")
    fake.reset()
    yield db
    with db.connect() as conn, conn.cursor() as cur:
        for name in ("sec_victim", "sec_attacker", "sec_owner"):
            cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
        for schema in (VICTIM_DB, ATTACKER_DB):
            cur.execute(f"DROP DATABASE IF EXISTS {schema}")
        cur.execute("DROP FUNCTION IF EXISTS sqlml_test.sec_anomaly_score")
        cur.execute("SET GLOBAL sqlml_rewrite = OFF")


def connect(db, user: str, database: str | None = None):
    return db.connect(user=user, password="pw", database=database)


def run_as_victim(db, sql: str = VICTIM_SQL, database: str | None = None) -> list[float]:
    with connect(db, "sec_victim", database) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return [row[0] for row in cur.fetchall()]


def test_a_usage_only_create_function_that_fails_records_nothing(world, fake):
    before = registry_lines(world)
    with connect(world, "sec_attacker") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as err:  # no current database
            cur.execute(f"CREATE FUNCTION score(x REAL) RETURNS REAL {ALIAS} 'attacker-ep'")
        assert err.value.args[0] == 1046
        with pytest.raises(pymysql.MySQLError) as err:  # no right to create routines there
            cur.execute(f"CREATE FUNCTION {VICTIM_DB}.score2(x REAL) RETURNS REAL {ALIAS} 'attacker-ep'")
        assert err.value.args[0] in (1044, 1142, 1370)
    assert registry_lines(world) == before
    assert run_as_victim(world) == [v * 2 for v in ROWS]
    assert "attacker-ep" not in endpoints_requested(fake)


def test_a_refused_drop_function_keeps_the_function_and_its_entry(world, fake):
    world.query(f"CREATE FUNCTION sec_anomaly_score(x REAL) RETURNS REAL {ALIAS} 'echo-sec' MAX_BATCH_SIZE 100")
    entry = registered(world, "sec_anomaly_score")
    assert len(entry) == 1, registry_lines(world)
    with connect(world, "sec_attacker") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as err:
            cur.execute("DROP FUNCTION sqlml_test.sec_anomaly_score")
        assert err.value.args[0] in (1370, 1044)
    assert registered(world, "sec_anomaly_score") == entry
    with connect(world, "sec_attacker") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.MySQLError) as err:
            cur.execute("DROP DATABASE sqlml_test")
        assert err.value.args[0] == 1044
    assert registered(world, "sec_anomaly_score") == entry
    world.query("SELECT sqlml_cache_clear()")
    fake.reset()
    rows = world.query("SELECT n, sec_anomaly_score(n) FROM numbers WHERE n <= 250 ORDER BY n")
    assert [r[1] for r in rows] == [float(n) for n in range(1, 251)]
    assert fake.stats(log=False)["requests"] == 3  # still batched: ceil(250 / 100)
    world.query("/* by its owner */ DROP FUNCTION sqlml_test.sec_anomaly_score")  # the entry goes
    assert not registered(world, "sec_anomaly_score")


def test_a_same_named_function_in_another_schema_never_receives_the_victims_values(world, fake):
    # The attack, by a user who may create functions in their own schema only.
    with connect(world, "sec_owner", ATTACKER_DB) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE FUNCTION score(x REAL) RETURNS REAL {ALIAS} 'attacker-ep'")
    assert registered(world, "score")
    # ... and by a USAGE-only user, whose statement fails.
    with connect(world, "sec_attacker") as conn, conn.cursor() as cur:
        with pytest.raises(pymysql.MySQLError):
            cur.execute(f"CREATE FUNCTION score(x REAL) RETURNS REAL {ALIAS} 'attacker-ep'")
    fake.reset()
    assert run_as_victim(world) == [v * 2 for v in ROWS]
    assert run_as_victim(world, "SELECT score(v) FROM r WHERE score(v) > 0 ORDER BY v", VICTIM_DB) == [
        v * 2 for v in ROWS]
    assert "attacker-ep" not in endpoints_requested(fake)
    assert fake.stats(log=False)["requests"] == 0  # the victim's function is plain SQL


def test_a_function_named_like_a_native_one_never_receives_the_natives_arguments(world, fake):
    """Unqualified INET_ATON( is always the server's own function, even in a schema that
    holds an ML function named inet_aton: its arguments must not go to that endpoint,
    whoever runs it (here a user with SHOW_ROUTINE, who can see that function's body)."""
    with connect(world, "sec_owner", ATTACKER_DB) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE FUNCTION inet_aton(ip VARCHAR(20)) RETURNS REAL {ALIAS} 'attacker-ep'")
        cur.execute("CREATE TABLE ips (ip VARCHAR(20))")
        cur.execute("INSERT INTO ips VALUES ('10.0.0.1'), ('192.168.1.7')")
    assert registered(world, "inet_aton")
    world.query(f"GRANT SELECT ON {ATTACKER_DB}.ips TO 'sec_victim'@'%'")
    world.query("GRANT SHOW_ROUTINE ON *.* TO 'sec_victim'@'%'")
    fake.reset()
    got = run_as_victim(world, "SELECT inet_aton(ip) FROM ips ORDER BY 1", ATTACKER_DB)
    assert got == [167772161, 3232235783]
    assert "attacker-ep" not in endpoints_requested(fake)


def test_a_stale_entry_never_chooses_where_values_go(world, fake):
    """A function made with Aurora's DDL, dropped while the registry does not look
    (sqlml_rewrite OFF: the hook does nothing) and recreated as plain SQL: its entry is
    stale, and the warm-up the rewriter still plans must check the function's current
    definition."""
    world.query(f"CREATE FUNCTION {VICTIM_DB}.stale(x REAL) RETURNS REAL {ALIAS} 'stale-ep'")
    assert registered(world, "stale")
    world.query("SET GLOBAL sqlml_rewrite = OFF")
    world.query(f"DROP FUNCTION {VICTIM_DB}.stale")
    world.query("SET GLOBAL sqlml_rewrite = ON")
    world.query(f"CREATE FUNCTION {VICTIM_DB}.stale(x REAL) RETURNS REAL DETERMINISTIC NO SQL RETURN x + 1")
    assert registered(world, "stale")
    fake.reset()
    got = run_as_victim(world, f"SELECT {VICTIM_DB}.stale(v) FROM {VICTIM_DB}.r ORDER BY v")
    assert got == [v + 1 for v in ROWS]
    assert "stale-ep" not in endpoints_requested(fake)
    assert fake.stats(log=False)["requests"] == 0


def test_a_dropped_schema_takes_its_entries_with_it(world, fake):
    with connect(world, "sec_owner", ATTACKER_DB) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE FUNCTION gone(x REAL) RETURNS REAL {ALIAS} 'echo-gone'")
    assert registered(world, "gone")
    world.query(f"DROP DATABASE {ATTACKER_DB}")
    assert not registered(world, "gone")


def test_names_cannot_inject_lines_into_the_registry(world, fake):
    forged = 'score\t{"endpoint": "attacker-ep", "max_batch_size": 10, "returns": "REAL", "param_types": ["REAL"]}'
    with connect(world, "sec_owner", ATTACKER_DB) as conn, conn.cursor() as cur:
        for ddl in (f"CREATE FUNCTION `zz\n{forged}`(x REAL) RETURNS REAL {ALIAS} 'attacker-ep'",
                    f"CREATE FUNCTION zz2(x REAL) RETURNS REAL {ALIAS} 'ep\n{VICTIM_DB}\t{forged}'",
                    f"CREATE FUNCTION zz3(x REAL) RETURNS REAL {ALIAS} 'ep\\n{VICTIM_DB}\\t{forged}'"):
            try:
                cur.execute(ddl)
            except pymysql.MySQLError:
                pass  # refused is fine; what matters is the file
    for line in registry_lines(world):
        fields = line.split("\t")
        assert len(fields) == 3 and IDENTIFIER.fullmatch(fields[0]) and IDENTIFIER.fullmatch(fields[1]), line
        assert (fields[0], fields[1]) != (VICTIM_DB, "score"), line
    fake.reset()
    assert run_as_victim(world) == [v * 2 for v in ROWS]
    assert run_as_victim(world, "SELECT score(v) FROM r ORDER BY v", VICTIM_DB) == [v * 2 for v in ROWS]
    assert "attacker-ep" not in endpoints_requested(fake)


def test_a_one_letter_name_does_not_send_every_statement_to_python(world, fake):
    with connect(world, "sec_owner", ATTACKER_DB) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE FUNCTION e(x REAL) RETURNS REAL {ALIAS} 'echo-e'")
    assert registered(world, "e")
    before = status(world, "Sqlml_rewrite_analysed_cnt")
    with world.connect() as conn, conn.cursor() as cur:
        for n in range(1, 301):  # every one contains the letter e, and `e` as a column alias
            cur.execute(f"SELECT n AS e FROM numbers WHERE n = {n}")
            cur.fetchall()
    assert status(world, "Sqlml_rewrite_analysed_cnt") == before
    # The counter is live: a real call of sec_a.e is looked at (and batched).
    with world.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {ATTACKER_DB}.e(n) FROM numbers WHERE n <= 20 ORDER BY n")
        assert [r[0] for r in cur.fetchall()] == [float(n) for n in range(1, 21)]
    assert status(world, "Sqlml_rewrite_analysed_cnt") == before + 1


# ---- item 3: no unbounded helper for everyone; KILL QUERY is honoured --------------------


def test_install_sql_leaves_no_filter_benchmark_for_everyone(db):
    assert db.query("SELECT name FROM mysql.func WHERE name = 'sqlml_rewrite_filter_ns'") == []


@pytest.fixture
def filter_ns(db):
    """The benchmark helper, created as bench/bench_rewrite.py does and dropped after."""
    db.query("DROP FUNCTION IF EXISTS sqlml_rewrite_filter_ns")  # an earlier sqlml installed it
    db.query("CREATE FUNCTION sqlml_rewrite_filter_ns RETURNS REAL SONAME 'sqlml.so'")
    yield
    db.query("DROP FUNCTION IF EXISTS sqlml_rewrite_filter_ns")


def test_the_filter_benchmark_is_capped(db, filter_ns):
    with pytest.raises(pymysql.MySQLError) as err:
        db.query("SELECT sqlml_rewrite_filter_ns('SELECT 1', 2000000)")
    assert "at most 1,000,000 iterations" in err.value.args[1]
    with pytest.raises(pymysql.MySQLError):
        db.query("SELECT sqlml_rewrite_filter_ns(REPEAT('x', 2000000), 1)")
    assert db.scalar("SELECT sqlml_rewrite_filter_ns('SELECT 1', 1000)") > 0


def test_kill_query_stops_the_filter_benchmark_within_a_second(db, filter_ns):
    conn = db.connect()
    conn_id = conn.thread_id()
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT sqlml_rewrite_filter_ns(REPEAT('x', 1000000), 20000)")
                outcome["result"] = cur.fetchall()
        except pymysql.MySQLError as exc:
            outcome["error"] = exc.args[0]
        outcome["ended"] = time.monotonic()
        outcome["started"] = started

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive(), outcome  # 20,000 passes over 1 MB take far longer than a second
    killed_at = time.monotonic()
    db.query(f"KILL QUERY {conn_id}")
    worker.join(10)
    conn.close()
    assert not worker.is_alive()
    assert outcome.get("error") == 1317, outcome  # ER_QUERY_INTERRUPTED
    assert outcome["ended"] - killed_at < 1.0, outcome["ended"] - killed_at
