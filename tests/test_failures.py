"""Service failures reach SQL as clear errors (or NULLs by policy), within bounded time,
and never as a wrong value or a result attached to the wrong row."""

import time

import pymysql
import pytest

Error = pymysql.err.MySQLError


def test_throttling_is_retried_and_counted(db, fake):
    before = db.status()["aurora"]
    fake.fail_next(2, code="ThrottlingException", service="comprehend")
    assert db.scalar("SELECT aws_comprehend_detect_sentiment('great', 'en')") == "POSITIVE"
    after = db.status()["aurora"]
    assert after["retry_request_cnt"] - before["retry_request_cnt"] == 2
    assert after["actual_request_cnt"] - before["actual_request_cnt"] == 3
    assert fake.stats()["requests"] == 3


def test_retries_are_bounded_and_the_error_names_the_code(db, fake):
    fake.fail_next(10, code="InternalFailure", status=500, service="sagemaker")
    with pytest.raises(Error) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-r', 'REAL', 1, 1)")
    assert "SageMaker InvokeEndpoint (endpoint 'sum-r') failed: InternalFailure" in err.value.args[1]
    assert fake.stats()["requests"] == 3  # max_attempts


def test_model_error_is_not_retried(db, fake):
    fake.fail_next(1, code="ModelError", status=424, service="sagemaker")
    with pytest.raises(Error) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-m', 'REAL', 1, 1)")
    assert "ModelError" in err.value.args[1]
    assert fake.stats()["requests"] == 1


def test_a_hanging_service_fails_the_statement_within_the_timeout(db, fake):
    with db.settings(timeout_s=1):
        fake.hang_next(1, seconds=8, service="sagemaker")
        started = time.monotonic()
        with pytest.raises(Error) as err:
            db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-h', 'REAL', 1, 1)")
        elapsed = time.monotonic() - started
    assert "no answer within timeout_s=1 s" in err.value.args[1]
    assert elapsed < 2.5, elapsed


@pytest.mark.parametrize("fault, message", [
    ("short", "sent 1 row, endpoint returned 0 results"),
    ("extra", "sent 1 row, endpoint returned 2 results"),
    ("malformed", "SageMaker InvokeEndpoint (endpoint 'sum-f')"),
])
def test_answers_with_the_wrong_shape_are_refused(db, fake, fault, message):
    fake.inject(fault, 1, service="sagemaker")
    with pytest.raises(Error) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-f', 'REAL', 1, 1)")
    assert message in err.value.args[1]


def test_comprehend_answer_without_a_sentiment_is_refused(db, fake):
    fake.inject("short", 1, service="comprehend")
    with pytest.raises(Error) as err:
        db.query("SELECT aws_comprehend_detect_sentiment('good', 'en')")
    assert "unexpected sentiment None" in err.value.args[1]


def test_null_policy_turns_failing_rows_into_null_with_a_warning(db, fake):
    with db.settings(on_error="null"):
        with db.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT t, aws_comprehend_detect_sentiment(t, 'en') FROM "
                        "(SELECT 1 AS k, 'good' AS t UNION ALL SELECT 2, '' UNION ALL SELECT 3, 'bad') AS x "
                        "ORDER BY k")
            rows = [(t, s.decode() if isinstance(s, bytes) else s) for t, s in cur.fetchall()]
            cur.execute("SHOW WARNINGS")
            warnings = cur.fetchall()
    assert rows == [("good", "POSITIVE"), ("", None), ("bad", "NEGATIVE")]
    assert any("text is empty" in w[2] for w in warnings), warnings


def test_failed_update_changes_no_row(db, fake):
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS notes")
        cur.execute("CREATE TABLE notes (id INT PRIMARY KEY, txt TEXT, s VARCHAR(10)) ENGINE=InnoDB")
        cur.executemany("INSERT INTO notes VALUES (%s, %s, 'old')", [(1, "good"), (2, "bad"), (3, ""), (4, "ok")])
        with pytest.raises(Error):
            cur.execute("UPDATE notes SET s = aws_comprehend_detect_sentiment(txt, 'en')")
        cur.execute("SELECT s, COUNT(*) FROM notes GROUP BY s")
        assert cur.fetchall() == (("old", 4),)


def test_errors_do_not_leave_later_statements_wrong(db, fake):
    fake.fail_next(1, code="ModelError", status=424, service="sagemaker")
    with db.connect() as conn:
        with pytest.raises(Error):
            db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-l', 'REAL', 1, n) FROM numbers WHERE n <= 3",
                     conn=conn)
        rows = db.query("SELECT n, aws_sagemaker_invoke_endpoint_real('sum-l', 'REAL', 1, n) "
                        "FROM numbers WHERE n <= 3 ORDER BY n", conn=conn)
    assert rows == [(1, 1.0), (2, 2.0), (3, 3.0)]


@pytest.mark.parametrize("body, message", [
    ('{"ResultList": "x", "ErrorList": []}', "malformed answer"),
    ('{"ResultList": [1, 2, 3], "ErrorList": []}', "out of range or repeated"),
    ('{"ResultList": [{"Index": 0, "Sentiment": "POSITIVE", "SentimentScore": "high"}], "ErrorList": []}',
     "malformed SentimentScore"),
    ('{"ResultList": [], "ErrorList": []}', "sent 3 texts, service accounted for 0"),
    ("[1, 2]", "malformed answer (expected an object with ResultList and ErrorList lists)"),
    ("not json", "BatchDetectSentiment"),
])
def test_malformed_batch_sentiment_answers_fail_the_statement_never_a_row(db, fake, body, message):
    # The engine reads BatchDetectSentiment's JSON itself (services/aws.py): every field is checked.
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS mal")
        cur.execute("CREATE TABLE mal (id INT PRIMARY KEY, txt VARCHAR(50))")
        cur.executemany("INSERT INTO mal VALUES (%s, %s)", [(1, "good one"), (2, "bad two"), (3, "so so")])
    fake.malformed_next(1, body=body, service="comprehend")
    with pytest.raises(Error) as err:
        db.query("SELECT id, aws_comprehend_detect_sentiment(txt, 'en') FROM mal "
                 "WHERE (SELECT sqlml_warm_comprehend(txt, 'en') FROM mal) >= 0")
    assert message in err.value.args[1]


@pytest.mark.parametrize("body, message", [
    ("[1]", "malformed answer (not a JSON object)"),
    ('{"Sentiment": "GREAT", "SentimentScore": {}}', "unexpected sentiment 'GREAT'"),
    ('{"Sentiment": "POSITIVE", "SentimentScore": {"Positive": 0.9}}', "malformed SentimentScore"),
])
def test_malformed_single_sentiment_answers_are_errors(db, fake, body, message):
    fake.malformed_next(1, body=body, service="comprehend")
    with pytest.raises(Error) as err:
        db.query("SELECT aws_comprehend_detect_sentiment('a malformed day', 'en')")
    assert message in err.value.args[1]
