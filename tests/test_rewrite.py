"""Aurora's SQL verbatim on MySQL: the sqlml plugin's pre-parse rewrite.

Every shape in the corpus runs twice, with sqlml_rewrite OFF (per-row evaluation) and
ON, on a cold cache: the rows must be identical, and a batched shape must cost at most
ceil(distinct inputs / max_batch_size) requests. Shapes the rewriter does not fully
understand must run exactly as written. MariaDB has no pre-parse hook: there Aurora's
DDL stays a syntax error (the translator and the explicit batch forms are the way).
"""

import math

import pymysql
import pytest

pytestmark = pytest.mark.server("mysql")

ECHO_DDL = ("CREATE FUNCTION ml_echo(value REAL) RETURNS REAL "
            "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'echo-rw' MAX_BATCH_SIZE 100")


@pytest.fixture
def mysql(db):
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL sqlml_rewrite = DEFAULT")
        cur.execute("DROP FUNCTION IF EXISTS ml_echo")
        cur.execute(ECHO_DDL)
        cur.execute("DROP TABLE IF EXISTS texts")
        cur.execute("CREATE TABLE texts (id INT PRIMARY KEY, t TEXT CHARACTER SET utf8mb4)")
        cur.executemany("INSERT INTO texts VALUES (%s, %s)",
                        [(i, ["I love it", "awful", "it is a box", "great but slow"][i % 4] + f" #{i % 60}")
                         for i in range(300)])
        cur.execute("DROP TABLE IF EXISTS scores")
        cur.execute("CREATE TABLE scores (n INT PRIMARY KEY, s DOUBLE)")
    yield db
    db.query("SET GLOBAL sqlml_rewrite = OFF")  # the session's setting (conftest)


@pytest.mark.server("mariadb")
def test_mariadb_keeps_aurora_ddl_a_syntax_error(db):
    with pytest.raises(pymysql.MySQLError) as err:
        db.query(ECHO_DDL.replace("ml_echo", "ml_echo_maria"))
    assert err.value.args[0] == 1064


def run(db, fake, sql, rewrite):
    """(rows, requests, notes) of `sql` on a cold cache with rewriting on or off."""
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SET GLOBAL sqlml_rewrite = {'ON' if rewrite else 'OFF'}")
        cur.execute("SELECT sqlml_cache_clear()")
        fake.reset()
        cur.execute(sql)
        rows = cur.fetchall()
        cur.execute("SHOW WARNINGS")
        notes = [w[2] for w in cur.fetchall()]
        return rows, fake.stats(log=False)["requests"], notes


# (statement, distinct inputs when batched or None when it must run as written, batch size)
CORPUS = [
    ("SELECT n, ml_echo(n) FROM numbers WHERE n <= 250 ORDER BY n", 250, 100),
    ("select N, ML_ECHO( n )  from numbers where n<=250 order by n", 250, 100),
    ("SELECT n FROM numbers WHERE ml_echo(n) > 240 AND n <= 300 ORDER BY n", 300, 100),
    ("SELECT n FROM numbers WHERE n BETWEEN 10 AND 209 AND ml_echo(n) >= 0 ORDER BY n", 200, 100),
    ("SELECT a.n, ml_echo(b.n) FROM numbers a JOIN numbers b ON b.n = a.n + 1 WHERE a.n <= 150 ORDER BY a.n", 150, 100),
    ("SELECT n % 7 AS k, SUM(ml_echo(n)) FROM numbers WHERE n <= 500 GROUP BY k HAVING SUM(ml_echo(n)) > 0 "
     "ORDER BY k", 500, 100),
    ("SELECT n FROM numbers WHERE n <= 120 ORDER BY ml_echo(n) DESC, n", 120, 100),
    ("SELECT /*+ MAX_EXECUTION_TIME(60000) */ n, ml_echo(n) FROM numbers /* c */ WHERE n <= 100 -- tail", 100, 100),
    ("WITH small AS (SELECT n FROM numbers WHERE n <= 130) SELECT n, ml_echo(n) FROM small ORDER BY n", 130, 100),
    ("SELECT DISTINCT ml_echo(n) FROM numbers WHERE n <= 90 ORDER BY 1", 90, 100),
    ("SELECT id, aws_comprehend_detect_sentiment(t, 'en'), aws_comprehend_detect_sentiment_confidence(t, 'en') "
     "FROM texts ORDER BY id", 60, 25),
    ("SELECT COUNT(*) FROM texts WHERE aws_comprehend_detect_sentiment(t, 'en') = 'POSITIVE'", 60, 25),
    ("SELECT n, aws_sagemaker_invoke_endpoint_real('echo-direct', 'REAL', 50, n) FROM numbers WHERE n <= 120 "
     "ORDER BY n", 120, 50),
    # Left as written: LIMIT, UNION, a subquery, an expression argument, nothing ML.
    ("SELECT n, ml_echo(n) FROM numbers WHERE n <= 100 ORDER BY n LIMIT 5", None, 100),
    ("SELECT ml_echo(n) FROM numbers WHERE n <= 3 UNION ALL SELECT ml_echo(n) FROM numbers WHERE n <= 2", None, 100),
    ("SELECT (SELECT MAX(ml_echo(n)) FROM numbers WHERE n < 10) AS m", None, 100),
    ("SELECT ml_echo(n * 2) FROM numbers WHERE n <= 20 ORDER BY 1", None, 100),
    ("SELECT n FROM numbers WHERE n IN (SELECT n FROM numbers WHERE ml_echo(n) < 5) ORDER BY n", None, 100),
]


@pytest.mark.parametrize("sql, distinct, batch", CORPUS, ids=[f"shape{i}" for i in range(len(CORPUS))])
def test_rewrite_keeps_results_and_batches(mysql, fake, sql, distinct, batch):
    rows_off, requests_off, notes_off = run(mysql, fake, sql, rewrite=False)
    rows_on, requests_on, notes_on = run(mysql, fake, sql, rewrite=True)
    assert rows_on == rows_off
    assert not any("rewritten" in n for n in notes_off)
    if distinct is None:
        assert requests_on == requests_off
        assert not any("rewritten" in n for n in notes_on), notes_on
    else:
        assert any("rewritten" in n and "sqlml_warm_" in n for n in notes_on), notes_on
        assert requests_on <= math.ceil(distinct / batch), (requests_on, requests_off)
        assert requests_on < requests_off


def test_comprehend_batches_of_25_distinct_texts(mysql, fake):
    rows, requests, _ = run(mysql, fake, "SELECT aws_comprehend_detect_sentiment(t, 'en') FROM texts", True)
    assert len(rows) == 300
    assert requests == math.ceil(60 / 25)
    assert sorted(fake.stats(log=False)["items_by_operation"]["BatchDetectSentiment"]) == [10, 25, 25]


def test_insert_select_and_update_are_batched_with_the_same_rows(mysql, fake):
    def table():
        return mysql.query("SELECT n, s FROM scores ORDER BY n")

    results = {}
    for rewrite in (False, True):
        mysql.query("DELETE FROM scores")
        _, inserted, _ = run(mysql, fake, "INSERT INTO scores (n, s) SELECT n, ml_echo(n) FROM numbers "
                                         "WHERE n <= 230", rewrite)
        _, updated, _ = run(mysql, fake, "UPDATE scores SET s = ml_echo(n + 0) * 0 + ml_echo(n) WHERE n <= 150",
                            rewrite)
        _, updated2, notes = run(mysql, fake, "UPDATE scores SET s = -ml_echo(n) WHERE n > 100", rewrite)
        results[rewrite] = (table(), inserted, updated, updated2, notes)
    assert results[True][0] == results[False][0]
    assert len(results[True][0]) == 230
    assert results[True][1] == 3 and results[False][1] == 230
    assert results[True][2] == results[False][2]  # an expression argument: left as written
    assert results[True][3] == 2 and results[False][3] == 130
    assert any("rewritten" in n for n in results[True][4])


def test_prepared_statements_and_multi_statements_run_as_written(mysql, fake):
    requests = {}
    for rewrite in (False, True):
        mysql.query(f"SET GLOBAL sqlml_rewrite = {'ON' if rewrite else 'OFF'}")
        mysql.query("SELECT sqlml_cache_clear()")
        fake.reset()
        with mysql.connect() as conn, conn.cursor() as cur:
            cur.execute("PREPARE s FROM 'SELECT ml_echo(n) FROM numbers WHERE n <= ? ORDER BY n'")
            cur.execute("SET @k = 4")
            cur.execute("EXECUTE s USING @k")
            assert [r[0] for r in cur.fetchall()] == [1.0, 2.0, 3.0, 4.0]
        with mysql.connect(client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS) as conn, conn.cursor() as cur:
            cur.execute("SELECT ml_echo(7); SELECT ml_echo(8)")
            first = cur.fetchall()
            cur.nextset()
            assert (first, cur.fetchall()) == (((7.0,),), ((8.0,),))
        requests[rewrite] = fake.stats(log=False)["requests"]
    assert requests[True] == requests[False] == 6  # as written: one request per row


def test_stored_procedures_keep_working(mysql, fake):
    """The hook sees what clients send, not the statements inside a procedure: CALL runs
    the per-row path, with the same answers either way."""
    mysql.query("DROP PROCEDURE IF EXISTS echo_some")
    mysql.query("CREATE PROCEDURE echo_some(k INT) SELECT n, ml_echo(n) FROM numbers WHERE n <= k ORDER BY n")
    try:
        off = run(mysql, fake, "CALL echo_some(3)", rewrite=False)
        on = run(mysql, fake, "CALL echo_some(3)", rewrite=True)
        assert off[0] == on[0] == ((1, 1.0), (2, 2.0), (3, 3.0))
        assert off[1] == on[1] == 3
    finally:
        mysql.query("DROP PROCEDURE echo_some")


# ---- Aurora's DDL and GRANT, verbatim ------------------------------------------------------


@pytest.mark.parametrize("ddl, udf_call", [
    ("create function ml_a(v double) returns double alias aws_sagemaker_invoke_endpoint endpoint name 'echo-a'",
     "aws_sagemaker_invoke_endpoint_real('echo-a', 'DOUBLE', 10000, v)"),
    ("CREATE DEFINER = CURRENT_USER FUNCTION ml_a(v INT, w VARCHAR(20))\n  RETURNS VARCHAR(64)\n  SQL SECURITY "
     "INVOKER\n  ALIAS  AWS_SAGEMAKER_INVOKE_ENDPOINT  ENDPOINT NAME 'echo-b'  MAX_BATCH_SIZE 7;",
     "aws_sagemaker_invoke_endpoint_string('echo-b', 'VARCHAR(64)', 7, v, convert(w using utf8mb4))"),
    ("Create Function ml_a(v INT, w VARCHAR(20) CHARSET utf8mb4) Returns VARCHAR(64) CHARSET utf8mb4 "
     "NOT DETERMINISTIC COMMENT 'churn model' Alias Aws_SageMaker_Invoke_Endpoint Endpoint Name 'echo-c'",
     "aws_sagemaker_invoke_endpoint_string('echo-c', 'VARCHAR(64)', 10000, v, convert(w using utf8mb4))"),
])
def test_aurora_ddl_is_accepted_as_written(mysql, fake, ddl, udf_call):
    mysql.query("DROP FUNCTION IF EXISTS ml_a")
    mysql.query(ddl)
    try:
        created = mysql.query("SHOW CREATE FUNCTION ml_a")[0][2]
        assert udf_call.lower() in " ".join(created.lower().split()), created
        assert " deterministic" not in created.lower()  # MySQL shows only a DETERMINISTIC function's flag
        args = "5" if "v double" in ddl else "5, 'x'"
        assert str(mysql.scalar(f"SELECT ml_a({args})")).startswith("5")
    finally:
        mysql.query("DROP FUNCTION IF EXISTS ml_a")


@pytest.mark.parametrize("quote", ["`{db}`.`ml_a`", "{db}.ml_a", "{db}.`ml_a`"])
def test_aurora_ddl_with_a_database_qualified_name(mysql, fake, quote):
    db = mysql.scalar("SELECT DATABASE()")
    mysql.query("DROP FUNCTION IF EXISTS ml_a")
    mysql.query(f"CREATE FUNCTION {quote.format(db=db)}(v DOUBLE) RETURNS DOUBLE "
                "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'echo-q'")
    try:
        assert mysql.scalar(f"SELECT `{db}`.ml_a(7)") == 7.0
    finally:
        mysql.query("DROP FUNCTION IF EXISTS ml_a")


def test_unsupported_ddl_gets_a_clear_error(mysql):
    with pytest.raises(pymysql.MySQLError) as err:
        mysql.query("CREATE FUNCTION ml_bad() RETURNS REAL ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'x'")
    assert "not supported" in err.value.args[1] and "at least one argument" in err.value.args[1]
    with pytest.raises(pymysql.MySQLError) as err:
        mysql.query("CREATE FUNCTION ml_bad(x REAL) RETURNS REAL DETERMINISTIC "
                    "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'x'")
    assert "cannot be DETERMINISTIC" in err.value.args[1]


def test_grant_invoke_is_the_role(mysql):
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'aurora_v2'@'%'")
        cur.execute("CREATE USER 'aurora_v2'@'%'")
        cur.execute("GRANT INVOKE SAGEMAKER ON *.* TO 'aurora_v2'@'%'")
        cur.execute("grant invoke comprehend on *.* to 'aurora_v2'@'%'")
        cur.execute("SHOW GRANTS FOR 'aurora_v2'@'%'")
        grants = " ".join(r[0] for r in cur.fetchall())
        assert "AWS_SAGEMAKER_ACCESS" in grants and "AWS_COMPREHEND_ACCESS" in grants
        cur.execute("REVOKE INVOKE SAGEMAKER ON *.* FROM 'aurora_v2'@'%'")
        cur.execute("SHOW GRANTS FOR 'aurora_v2'@'%'")
        assert "AWS_SAGEMAKER_ACCESS" not in " ".join(r[0] for r in cur.fetchall())
        cur.execute("DROP USER 'aurora_v2'@'%'")


def test_the_seed_queries_run_verbatim_and_batched(mysql, fake):
    """The seed's Aurora statements, unchanged: one request per 10,000 rows."""
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP FUNCTION IF EXISTS anomaly_score")
        cur.execute("CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT "
                    "ENDPOINT NAME 'echo-seed'")
        cur.execute("DROP TABLE IF EXISTS nyc_taxi")
        cur.execute("CREATE TABLE nyc_taxi (ts INT PRIMARY KEY, value DOUBLE)")
        cur.execute("INSERT INTO nyc_taxi SELECT n, (n * 37) % 1000 FROM numbers")
        cur.execute("SELECT sqlml_cache_clear()")
        fake.reset()
        cur.execute("SET @score_cutoff = (SELECT AVG(anomaly_score(value)) + 3 * STD(anomaly_score(value)) "
                    "FROM nyc_taxi)")
        cur.execute("SELECT *, anomaly_score(value) score FROM nyc_taxi WHERE anomaly_score(value) > @score_cutoff")
        cur.fetchall()
        assert fake.stats(log=False)["requests"] == 1  # 1,000 distinct values, one batch
        cur.execute("SELECT VARIABLE_VALUE FROM performance_schema.global_status "
                    "WHERE VARIABLE_NAME = 'Sqlml_rewritten_cnt'")
        assert int(cur.fetchone()[0]) >= 2


@pytest.mark.parametrize("pad", range(6))
def test_the_filter_finds_names_at_any_offset_and_case(mysql, fake, pad):
    """The C pre-filter scans every other byte: a name must be found wherever it starts."""
    name = ["ml_echo", "ML_ECHO", "Ml_EcHo"][pad % 3]
    sql = f"SELECT{' ' * (pad + 1)}{name}(n) FROM numbers WHERE n <= 30"
    _, requests, notes = run(mysql, fake, sql, rewrite=True)
    assert any("rewritten" in n for n in notes), (sql, notes)
    assert requests == 1


def test_insert_and_replace_values_are_batched(mysql, fake):
    values = ", ".join(f"({i}, ml_echo({i}))" for i in range(1, 131))
    texts = ", ".join(f"({i}, aws_comprehend_detect_sentiment_confidence('text {i % 30}', 'en'))"
                      for i in range(1, 61))
    def rewritten():
        return int(mysql.query("SHOW GLOBAL STATUS LIKE 'Sqlml_rewritten_cnt'")[0][1])

    results = {}
    for rewrite in (False, True):
        mysql.query("DELETE FROM scores")
        before = rewritten()
        _, inserted, _ = run(mysql, fake, f"INSERT INTO scores (n, s) VALUES {values}", rewrite)
        _, replaced, _ = run(mysql, fake, f"REPLACE INTO scores (n, s) VALUES {texts}", rewrite)
        results[rewrite] = (mysql.query("SELECT n, s FROM scores ORDER BY n"), inserted, replaced,
                            rewritten() - before)
    assert results[True][0] == results[False][0] and len(results[True][0]) == 130
    assert results[False][1:] == (130, 30, 0)
    assert results[True][1:] == (2, 2, 2)  # ceil(130 / 100), ceil(30 / 25); both statements rewritten


def test_values_of_a_user_without_the_role_send_nothing(mysql, fake):
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP USER IF EXISTS 'rw_user'@'%'")
        cur.execute("CREATE USER 'rw_user'@'%' IDENTIFIED BY 'pw'")
        cur.execute("GRANT ALL ON sqlml_test.* TO 'rw_user'@'%'")
    try:
        fake.reset()
        with mysql.connect(user="rw_user", password="pw") as conn, conn.cursor() as cur:
            with pytest.raises(pymysql.MySQLError) as err:
                cur.execute("INSERT INTO scores (n, s) VALUES (1001, aws_comprehend_detect_sentiment_confidence("
                            "'a', 'en')), (1002, aws_comprehend_detect_sentiment_confidence('b', 'en'))")
            assert err.value.args[0] == 1227
        assert fake.stats(log=False)["requests"] == 0
    finally:
        mysql.query("DROP USER IF EXISTS 'rw_user'@'%'")
