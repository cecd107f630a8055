"""SageMaker functions on a real server: typed UDFs, translated wrappers, the seed's anomaly query."""

import statistics

import pymysql
import pytest

from sqlml.translate import translate

Error = pymysql.err.MySQLError


def create(db, ddl: str) -> None:
    """Runs Aurora DDL through sqlml translate, as a DBA would."""
    sql = translate(ddl)
    name = sql.split("FUNCTION ", 1)[1].split("(", 1)[0]
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"DROP FUNCTION IF EXISTS {name}")
        cur.execute(sql)


@pytest.fixture
def taxi(db):
    # A taxi-like series: a regular pattern with two spikes the RCF-like endpoint scores high.
    values = [100 + (i % 48) - 24 for i in range(480)]
    values[100] = 400
    values[300] = 5
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS nyc_taxi")
        cur.execute("CREATE TABLE nyc_taxi (ts DATETIME PRIMARY KEY, value INT)")
        cur.executemany("INSERT INTO nyc_taxi VALUES (TIMESTAMP('2014-07-01') + INTERVAL %s MINUTE, %s)",
                        [(30 * i, v) for i, v in enumerate(values)])
    return values


def test_seed_anomaly_query_by_name(db, fake, taxi):
    create(db, "CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL "
               "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'random-cut-forest-model-demo'")
    fake.configure(endpoint_aliases={"random-cut-forest-model-demo": "rcf"})
    with db.connect() as conn:
        db.query("SET @score_cutoff = (SELECT AVG(anomaly_score(value)) + 3 * STD(anomaly_score(value)) "
                 "FROM nyc_taxi)", conn=conn)
        rows = db.query("SELECT ts, value, anomaly_score(value) AS score FROM nyc_taxi "
                        "WHERE anomaly_score(value) > @score_cutoff ORDER BY ts", conn=conn)
    scores = [abs(v - 100) / 10 for v in taxi]
    cutoff = statistics.fmean(scores) + 3 * statistics.pstdev(scores)
    expected = [(v, s) for v, s in zip(taxi, scores, strict=True) if s > cutoff]
    assert [v for _, v, _ in rows] == [v for v, _ in expected] == [400, 5]
    assert [s for _, _, s in rows] == pytest.approx([s for _, s in expected])


@pytest.mark.parametrize("udf, declared, endpoint, args, expected", [
    ("real", "REAL", "sum-ep", "1, 2.5", 3.5),
    ("int", "INTEGER", "sum-ep", "40, 2", 42),
    ("int", "BIGINT", "len-ep", "1, 'a', 2.5, NULL IS NULL", 4),
    ("decimal", "DECIMAL(6,2)", "sum-ep", "1.005, 2", "3.01"),
    ("string", "VARCHAR(20)", "echo-ep", "'a,b \"c\"', 1", 'a,b "c"'),
    ("real", "DOUBLE", "xgb-ep", "2, 3", 5.0),
    ("real", "REAL", "linear-ep", "0.25, 0.5", 0.75),
    ("real", "REAL", "jsonl-ep", "1, 1", 2.0),
])
def test_typed_udfs_on_each_response_format(db, fake, udf, declared, endpoint, args, expected):
    value = db.scalar(f"SELECT aws_sagemaker_invoke_endpoint_{udf}('{endpoint}', '{declared}', 10, {args})")
    if udf == "decimal":
        value = str(value)
    assert value == expected
    assert fake.stats()["requests"] == 1


def test_arguments_become_one_rfc4180_csv_row_in_order(db, fake):
    create(db, "CREATE FUNCTION echo3(a VARCHAR(100), b INT, c DOUBLE) RETURNS VARCHAR(100) "
               "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'echo-x'")
    for text in ['plain', 'comma, inside', 'quote " inside', 'new\nline', 'cr\rhere', ' padded ', 'café 😀']:
        assert db.scalar("SELECT echo3(%s, 7, 1.5)", (text,)) == text
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_int('len-x', 'INT', 5, 'a,b', 2, 3)") == 3


def test_utf8mb4_round_trip_through_a_varchar_wrapper(db, fake):
    create(db, "CREATE FUNCTION echo_text(t VARCHAR(50)) RETURNS VARCHAR(50) "
               "ALIAS AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'echo-utf8'")
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT echo_text('café 😀'), CHARSET(echo_text('café 😀')), "
                    "CHAR_LENGTH(echo_text('café 😀'))")
        assert cur.fetchone() == ("café 😀", "utf8mb4", 6)


def test_overlong_varchar_answer_is_cut_on_a_character_boundary_with_a_warning(db, fake):
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT CONVERT(aws_sagemaker_invoke_endpoint_string('echo-cut', 'VARCHAR(6)', 1, "
                    "'café 😀😀') USING utf8mb4)")
        assert cur.fetchone() == ("café 😀",)
        cur.execute("SHOW WARNINGS")
        warnings = cur.fetchall()
    assert any(code == 1265 and "cut to VARCHAR(6)" in msg for _, code, msg in warnings), warnings


@pytest.mark.parametrize("declared, args, message", [
    ("INTEGER", "1.25, 2", "returned '3.25', which is not an integer (INTEGER)"),
    ("TINYINT", "100, 100", "returned 200, which is out of range for TINYINT"),
    ("DECIMAL(4,2)", "99, 1", "which is out of range for DECIMAL(4,2)"),
])
def test_answer_that_does_not_fit_the_declared_type_is_an_error(db, fake, declared, args, message):
    udf = "int" if "INT" in declared else "decimal"
    with pytest.raises(Error) as err:
        db.query(f"SELECT aws_sagemaker_invoke_endpoint_{udf}('sum-t', '{declared}', 1, {args})")
    assert message in err.value.args[1]


def test_null_argument_is_null_without_a_request(db, fake):
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('sum-n', 'REAL', 1, 1, NULL)") is None
    assert fake.stats()["requests"] == 0


@pytest.mark.parametrize("udf, declared", [("real", "REAL"), ("int", "BIGINT"), ("decimal", "DECIMAL(10,3)"),
                                          ("string", "VARCHAR(10)")])
def test_a_null_row_leaves_every_later_row_its_own_answer(db, fake, udf, declared):
    """Issue 13.2: after one NULL row, DECIMAL answers were NULL (MariaDB and MySQL) in
    every place that reads the server's NULL flag: IS NULL, COALESCE, INSERT ... SELECT,
    a merged derived table, a stored-function wrapper."""
    src = ("(SELECT 1 k, 5 v UNION ALL SELECT 2, NULL UNION ALL SELECT 3, 7 UNION ALL SELECT 4, NULL "
           "UNION ALL SELECT 5, 9) q")
    f = f"aws_sagemaker_invoke_endpoint_{udf}('echo-nulls', '{declared}', 1, v)"
    typed = f"CAST({f} AS DECIMAL(10,3))" if udf == "decimal" else f
    rows = db.query(f"SELECT k, {typed}, {f} IS NULL, COALESCE({typed}, -1) FROM {src} ORDER BY k")
    got = [(k, None if r is None else float(r), n, float(c)) for k, r, n, c in rows]
    assert got == [(1, 5.0, 0, 5.0), (2, None, 1, -1.0), (3, 7.0, 0, 7.0), (4, None, 1, -1.0), (5, 9.0, 0, 9.0)]
    merged = db.query(f"SELECT COUNT(*), SUM(d.r IS NULL), SUM(d.v IS NULL), SUM(CAST(d.r AS DECIMAL(10,3)) <=> d.v) "
                      f"FROM (SELECT k, v, {f} AS r FROM {src}) d")
    assert [tuple(int(x) for x in row) for row in merged] == [(5, 2, 2, 5)]
    column = "VARCHAR(10)" if udf == "string" else "DECIMAL(10,3)"
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS null_rows")
        cur.execute(f"CREATE TABLE null_rows (k INT PRIMARY KEY, r {column})")
        cur.execute(f"INSERT INTO null_rows SELECT k, {f} FROM {src}")
        cur.execute("SELECT k, r FROM null_rows ORDER BY k")
        stored = [(k, None if r is None else float(r)) for k, r in cur.fetchall()]
        assert stored == [(1, 5.0), (2, None), (3, 7.0), (4, None), (5, 9.0)]
        cur.execute("DROP FUNCTION IF EXISTS null_rows_w")
        returns = "VARCHAR(10) CHARSET utf8mb4" if udf == "string" else declared
        cur.execute(f"CREATE FUNCTION null_rows_w(v INT) RETURNS {returns} NOT DETERMINISTIC RETURN {f}")
        cur.execute(f"SELECT k, null_rows_w(v), null_rows_w(v) IS NULL FROM {src} ORDER BY k")
        wrapped = [(k, None if r is None else float(r), n) for k, r, n in cur.fetchall()]
        assert wrapped == [(1, 5.0, 0), (2, None, 1), (3, 7.0, 0), (4, None, 1), (5, 9.0, 0)]
        cur.execute("DROP FUNCTION null_rows_w")
        cur.execute("DROP TABLE null_rows")


@pytest.mark.parametrize("call, message", [
    ("aws_sagemaker_invoke_endpoint_real('ep', 'REAL', 1)", "needs (endpoint, return_type, max_batch_size, arg1"),
    ("aws_sagemaker_invoke_endpoint_real('ep', 'INT', 1, 2)",
     "return type INT needs aws_sagemaker_invoke_endpoint_int"),
    ("aws_sagemaker_invoke_endpoint_real('bad name!', 'REAL', 1, 2)", "endpoint 'bad name!' invalid"),
    ("aws_sagemaker_invoke_endpoint_real('ep', 'REAL', 0, 2)", "3rd argument (max_batch_size) must be an integer > 0"),
    ("aws_sagemaker_invoke_endpoint_string('ep', 'BLOB', 1, 2)", "return type 'BLOB' invalid"),
    ("aws_sagemaker_invoke_endpoint_real(IF(RAND() < 2, 'ep', 'x'), 'REAL', 1, 2)", "must be a constant string"),
])
def test_bad_calls_fail_at_init_with_the_fix(db, fake, call, message):
    with pytest.raises(Error) as err:
        db.query(f"SELECT {call}")
    assert message in err.value.args[1]
    assert fake.stats()["requests"] == 0


def test_service_error_names_service_endpoint_and_aws_code(db, fake):
    with pytest.raises(Error) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('nosuch-endpoint', 'REAL', 1, 1)")
    text = err.value.args[1]
    assert "SageMaker InvokeEndpoint (endpoint 'nosuch-endpoint') failed: ValidationError" in text
    with pytest.raises(Error) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-bad', 'REAL', 1, 'not a number')")
    assert "(endpoint 'sum-bad') failed: ModelError" in err.value.args[1]
