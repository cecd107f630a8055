"""The batch path (warm-up aggregates + result cache), coalescing, and the cache itself.

Row alignment is proven with echo endpoints: each row's answer must be its own input.
"""

import concurrent.futures
import math
import random

import pymysql
import pytest

from tests.doubles.fakeaws import fake_sentiment

Error = pymysql.err.MySQLError


def make_table(db, rows):
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS items")
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, txt VARCHAR(200), v DOUBLE)")
        cur.executemany("INSERT INTO items VALUES (%s, %s, %s)", rows)


def aurora(db):
    return db.status()["aurora"]


@pytest.mark.parametrize("rows, batch", [(1000, 100), (999, 100), (250, 1), (50, 7), (10, 10000)])
def test_batch_path_sends_ceil_n_over_batch_requests_and_binds_each_row(db, fake, rows, batch):
    make_table(db, [(i, f"id-{i}, \"q\" é", i * 0.5) for i in range(rows)])
    before = aurora(db)
    result = db.query(
        f"SELECT id, aws_sagemaker_invoke_endpoint_string('echo-b', 'VARCHAR(100)', {batch}, txt, v) FROM items "
        f"WHERE (SELECT sqlml_warm_sagemaker('echo-b', {batch}, txt, v) FROM items) >= 0 ORDER BY id")
    assert [r[1] for r in result] == [f"id-{i}, \"q\" é" for i in range(rows)]
    stats = fake.stats()
    assert stats["requests"] == math.ceil(rows / batch)
    assert sorted(stats["items_by_endpoint"]["echo-b"], reverse=True)[0] == min(batch, rows)
    after = aurora(db)
    assert after["actual_request_cnt"] - before["actual_request_cnt"] == math.ceil(rows / batch)
    assert after["cache_hit_cnt"] - before["cache_hit_cnt"] == rows


def test_nulls_duplicates_and_random_batch_sizes_stay_aligned(db, fake):
    rng = random.Random(7)
    data = []
    for i in range(400):
        choice = rng.random()
        txt = None if choice < 0.1 else f"dup-{i % 13}" if choice < 0.4 else f"u-{i}"
        data.append((i, txt, None if rng.random() < 0.05 else float(i)))
    make_table(db, data)
    for batch in (1, 3, 17, 64, 400):
        db.scalar("SELECT sqlml_cache_clear()")
        fake.clear_stats()
        rows = db.query(
            f"SELECT id, txt, v, aws_sagemaker_invoke_endpoint_string('echo-r', 'VARCHAR(100)', {batch}, txt, v) "
            f"FROM items WHERE (SELECT sqlml_warm_sagemaker('echo-r', {batch}, txt, v) FROM items) >= 0 "
            f"ORDER BY id")
        for _, txt, v, answer in rows:
            assert answer == (None if txt is None or v is None else txt)
        distinct = {(t, v) for _, t, v in data if t is not None and v is not None}
        assert fake.stats()["requests"] == math.ceil(len(distinct) / batch)


def test_seed_anomaly_query_batched_through_the_wrapper(db, fake):
    from sqlml.translate import translate

    fake.configure(endpoint_aliases={"random-cut-forest-model-demo": "rcf"})
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP FUNCTION IF EXISTS anomaly_score")
        cur.execute(translate("CREATE FUNCTION anomaly_score(value REAL) RETURNS REAL ALIAS "
                              "AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'random-cut-forest-model-demo'"))
        cur.execute("DROP TABLE IF EXISTS taxi")
        cur.execute("CREATE TABLE taxi (id INT PRIMARY KEY, value INT)")
        values = [100 + (i % 50) for i in range(2000)] + [900]
        cur.executemany("INSERT INTO taxi VALUES (%s, %s)", list(enumerate(values)))
    rows = db.query("SELECT id, value, anomaly_score(value) FROM taxi "
                    "WHERE (SELECT sqlml_warm_sagemaker('random-cut-forest-model-demo', 10000, value) FROM taxi) >= 0 "
                    "AND anomaly_score(value) > 50")
    assert rows == [(2000, 900, 80.0)]
    assert fake.stats()["requests"] == 1  # 51 distinct values, one request (INT column, REAL parameter: one key)


def test_comprehend_batch_path_shares_answers_between_label_and_confidence(db, fake):
    texts = [f"good {i}" if i % 3 == 0 else f"bad {i}" if i % 3 == 1 else f"plain {i}" for i in range(60)]
    make_table(db, [(i, t, 0) for i, t in enumerate(texts)])
    rows = db.query("SELECT txt, aws_comprehend_detect_sentiment(txt, 'en'), "
                    "aws_comprehend_detect_sentiment_confidence(txt, 'en') FROM items "
                    "WHERE (SELECT sqlml_warm_comprehend(txt, 'en') FROM items) >= 0 ORDER BY id")
    for txt, label, confidence in rows:
        expected, scores = fake_sentiment(txt)
        assert (label, confidence) == (expected, pytest.approx(scores[expected.capitalize()]))
    assert sorted(fake.stats()["items_by_operation"]["BatchDetectSentiment"]) == [10, 25, 25]


def test_batch_item_errors_fail_only_their_rows(db, fake):
    make_table(db, [(1, "good", 0), (2, "bad #fail# text", 0), (3, "great", 0)])
    with db.settings(on_error="null"):
        rows = db.query("SELECT id, aws_comprehend_detect_sentiment(txt, 'en') FROM items "
                        "WHERE (SELECT sqlml_warm_comprehend(txt, 'en') FROM items) >= 0 ORDER BY id")
    assert rows == [(1, "POSITIVE"), (2, None), (3, "POSITIVE")]


def test_a_short_batch_answer_fails_the_statement_with_both_counts(db, fake):
    make_table(db, [(i, f"r{i}", i) for i in range(10)])
    fake.short_next(1, service="sagemaker")
    with pytest.raises(Error) as err:
        db.query("SELECT aws_sagemaker_invoke_endpoint_real('sum-s', 'REAL', 10, v) FROM items "
                 "WHERE (SELECT sqlml_warm_sagemaker('sum-s', 10, v) FROM items) >= 0")
    assert "sent 10 rows, endpoint returned 9 results" in err.value.args[1]


def test_throttled_batches_are_retried(db, fake):
    make_table(db, [(i, f"r{i}", i) for i in range(30)])
    fake.fail_next(2, code="ThrottlingException", service="sagemaker")
    total = db.scalar("SELECT SUM(aws_sagemaker_invoke_endpoint_real('sum-t', 'REAL', 10, v)) FROM items "
                      "WHERE (SELECT sqlml_warm_sagemaker('sum-t', 10, v) FROM items) >= 0")
    assert total == sum(range(30))
    assert fake.stats()["requests"] == 5


def test_concurrent_scalar_calls_are_coalesced(db, fake):
    fake.configure(latency_ms_by_service={"sagemaker": 30})

    def work(worker):
        with db.connect() as conn:
            return [db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('sum-co', 'REAL', 100, %s)",
                              (worker * 1000 + i,), conn=conn) == worker * 1000 + i for i in range(10)]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert all(all(r) for r in pool.map(work, range(16)))
    requests = fake.stats()["requests"]
    assert requests <= 160 / 2, requests  # measured 8x or better in bench


def test_cache_answers_repeats_and_can_be_cleared_and_disabled(db, fake):
    q = "SELECT aws_comprehend_detect_sentiment('good cache', 'en')"
    assert db.scalar(q) == "POSITIVE"
    assert db.scalar(q) == "POSITIVE"
    assert db.scalar("SELECT aws_comprehend_detect_sentiment_confidence('good cache', 'en')") == pytest.approx(0.6)
    assert fake.stats()["requests"] == 1
    assert db.scalar("SELECT sqlml_cache_clear()") >= 1
    db.scalar(q)
    assert fake.stats()["requests"] == 2
    with db.settings(cache_enabled="off"):
        db.scalar(q)
        db.scalar(q)
        assert fake.stats()["requests"] == 4


def test_counters_are_exact_after_a_batch_statement_longer_than_a_tally_flush(db, fake):
    from sqlml.engine.tally import FLUSH_EVERY

    rows = FLUSH_EVERY * 2 + 123  # periodic flushes, then the rest on the statement's end or the read
    make_table(db, [(i, None, i * 0.5) for i in range(rows)])
    before = aurora(db)
    total = db.scalar("SELECT SUM(aws_sagemaker_invoke_endpoint_real('sum-tally', 'REAL', 10000, v)) FROM items "
                      "WHERE (SELECT sqlml_warm_sagemaker('sum-tally', 10000, v) FROM items) >= 0")
    assert total == sum(i * 0.5 for i in range(rows))
    after = aurora(db)  # read from another connection
    for name in ("logical_request_cnt", "cache_hit_cnt", "logical_response_cnt"):
        assert after[name] - before[name] == rows, name
    assert after["actual_request_cnt"] - before["actual_request_cnt"] == 1


def test_insert_select_with_the_warm_up_writes_what_the_app_side_baseline_writes(db, fake):
    """The benchmark's comparison in small (bench/app_side.py): the batch path writing its answers
    with INSERT ... SELECT, and plain client code (PyMySQL + boto3, text/csv chunks, executemany)
    must store the same double for every row, over values whose CSV text the shim writes in C
    (m/10^k) and those it leaves to Python (more than 15 significant digits)."""
    from bench import app_side
    from tests.conftest import DATABASE

    rnd = random.Random(16)
    values = [round(rnd.uniform(-1e6, 1e6), rnd.randint(0, 6)) for _ in range(8000)]
    values += [rnd.uniform(-1, 1) * 10 ** rnd.randint(-20, 20) for _ in range(4000)] + [0.0, -0.0, 76, 1e15, 2 ** 53]
    values += values[:500]  # duplicates share an answer, never a row
    with db.connect() as conn, conn.cursor() as cur:
        for table in ("app_src", "scores_sql", "scores_app"):
            cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute("CREATE TABLE app_src (n INT PRIMARY KEY, v DOUBLE)")
        cur.executemany("INSERT INTO app_src VALUES (%s, %s)", list(enumerate(values)))
        cur.execute("CREATE TABLE scores_sql (n INT PRIMARY KEY, score DOUBLE)")
        cur.execute("CREATE TABLE scores_app (n INT PRIMARY KEY, score DOUBLE)")
        fake.clear_stats()
        cur.execute("INSERT INTO scores_sql (n, score) SELECT n, aws_sagemaker_invoke_endpoint_real('sum-b', 'REAL', "
                    "10000, v) FROM app_src WHERE (SELECT sqlml_warm_sagemaker('sum-b', 10000, v) FROM app_src) >= 0")
        assert cur.rowcount == len(values)
        distinct = len(set(values))
        assert fake.stats()["requests"] == math.ceil(distinct / 10000)
    connect = app_side.connector(db.server.host, db.server.port, db.server.user, DATABASE)
    client = app_side.sagemaker_client(db.fake.url)
    for shape in app_side.SHAPES.values():
        db.query("DELETE FROM scores_app")
        run = shape(connect, client, "sum-b", "SELECT n, v FROM app_src",
                    "INSERT INTO scores_app (n, score) VALUES (%s, %s)")
        assert run.rows == len(values)
        assert db.scalar("SELECT COUNT(*) FROM app_src s LEFT JOIN scores_sql q ON q.n = s.n "
                         "LEFT JOIN scores_app a ON a.n = s.n WHERE q.score IS NULL OR a.score IS NULL "
                         "OR q.score <> a.score OR q.score <> s.v") == 0
