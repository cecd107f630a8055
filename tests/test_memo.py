"""The statement memo (native/memo.h): the batch path's reads answered in C.

A warm-up leaves each answer in C keyed by its row's argument bytes; the reading
function of the same statement finds its row there without entering Python. Every
test compares with the Python path (the same query without the warm-up, cache
cleared) and checks Sqlml_memo_hit_cnt, so a memo that silently stopped working, or
that answered differently from Python, fails here.
"""

import concurrent.futures
import math
import time

import pymysql
import pytest

from tests.doubles.fakeaws import fake_sentiment


def make_table(db, rows, txt_type="VARCHAR(200)"):
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS memo_items")
        cur.execute(f"CREATE TABLE memo_items (id INT PRIMARY KEY, txt {txt_type}, v DOUBLE, n BIGINT)")
        cur.executemany("INSERT INTO memo_items VALUES (%s, %s, %s, %s)", rows)


def memo_hits(db) -> int:
    return db.status()["extended"]["memo_hit_cnt"]


def batched_and_per_row(db, select: str, warm: str) -> tuple[list, list, int]:
    """(rows with the warm-up, rows without it, memo hits of the first)."""
    db.scalar("SELECT sqlml_cache_clear()")
    before = memo_hits(db)
    batched = db.query(f"{select} WHERE (SELECT {warm} FROM memo_items) >= 0 ORDER BY id")
    hits = memo_hits(db) - before
    db.scalar("SELECT sqlml_cache_clear()")
    per_row = db.query(f"{select} ORDER BY id")
    return batched, per_row, hits


def test_batch_reads_are_answered_from_the_memo_with_each_rows_own_answer(db, fake):
    make_table(db, [(i, None, i * 0.25 if i % 7 else None, i) for i in range(3000)])
    db.scalar("SELECT sqlml_cache_clear()")
    fake.clear_stats()
    db.query("SELECT SUM(aws_sagemaker_invoke_endpoint_real('echo-memo', 'REAL', 500, v)) FROM memo_items "
             "WHERE (SELECT sqlml_warm_sagemaker('echo-memo', 500, v) FROM memo_items) >= 0")
    # Every distinct key is sent once, by the warm-up, batched: none of the keys it holds
    # a few rows before reserving them (native/sqlml_udf.c, WARM_AHEAD) is dropped, or its
    # reader would send a request of one.
    assert fake.stats()["requests"] == math.ceil(sum(1 for i in range(3000) if i % 7) / 500)
    batched, per_row, hits = batched_and_per_row(
        db, "SELECT id, v, aws_sagemaker_invoke_endpoint_real('echo-memo', 'REAL', 500, v) FROM memo_items",
        "sqlml_warm_sagemaker('echo-memo', 500, v)")
    assert batched == per_row
    for _, v, answer in batched:
        assert answer == v  # echo: each row's own input, NULL for NULL
    assert hits == sum(1 for _, v, _ in batched if v is not None)


def test_answers_given_back_during_the_scan_and_rows_cached_before_each_keep_their_own_answer(db, fake):
    # Small batches come back while the warm-up still scans, so the shim records them in
    # the memo chunk by chunk (WarmAggregate.ready); from id 5000 on the rows were cached
    # by an earlier statement, which ends the one-target run in the middle of the scan,
    # after answers were given back: the rest must still line up with their rows.
    make_table(db, [(i, None, i * 0.25 if i % 11 else None, i) for i in range(8000)])
    db.query("SELECT sqlml_cache_clear()")
    db.query("SELECT SUM(aws_sagemaker_invoke_endpoint_real('echo-hand', 'REAL', 500, v)) FROM memo_items "
             "WHERE id >= 5000 AND (SELECT sqlml_warm_sagemaker('echo-hand', 500, v) FROM memo_items "
             "WHERE id >= 5000) >= 0")
    before = memo_hits(db)
    rows = db.query("SELECT id, v, aws_sagemaker_invoke_endpoint_real('echo-hand', 'REAL', 100, v) FROM memo_items "
                    "WHERE (SELECT sqlml_warm_sagemaker('echo-hand', 100, v) FROM memo_items) >= 0 ORDER BY id")
    assert len(rows) == 8000
    assert all(answer == v for _, v, answer in rows)  # echo: each row's own input, NULL for NULL
    assert memo_hits(db) - before == sum(1 for _, v, _ in rows if v is not None)


def test_rows_read_in_another_order_than_the_warm_up_and_repeated_keys_each_find_their_own_answer(db, fake):
    # The memo finds a row read in the warm-up's order without a probe (its read cursor);
    # here the warm-up scans by id while the reads come by the index on n (a shuffled
    # order), every key is repeated, and two readers of the same target share the memo.
    # A cursor that trusted its position over the key would give a row another's answer.
    rows = [(i, None, (i * 7919 % 600) * 0.5, (i * 104729) % 5003) for i in range(5000)]
    make_table(db, rows)
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE INDEX by_n ON memo_items (n)")
    db.query("SELECT sqlml_cache_clear()")
    before = memo_hits(db)
    got = db.query("SELECT id, v, aws_sagemaker_invoke_endpoint_real('echo-order', 'REAL', 500, v), "
                   "aws_sagemaker_invoke_endpoint_real('echo-order', 'REAL', 500, v + 0) FROM memo_items "
                   "FORCE INDEX (by_n) WHERE n >= 0 AND (SELECT sqlml_warm_sagemaker('echo-order', 500, v) "
                   "FROM memo_items IGNORE INDEX (by_n)) >= 0")
    assert len(got) == 5000
    assert [r[0] for r in got] != sorted(r[0] for r in got)  # the reads really came in another order
    assert all(first == v and second == v for _, v, first, second in got)
    assert memo_hits(db) - before == 2 * 5000


def test_long_keys_and_long_text_answers_each_stay_with_their_own_row(db, fake):
    # Keys past the entry's 12 bytes and answers past its 8 live in the memo's arena,
    # behind their length: texts around those bounds and past 255 bytes as the second
    # feature (the key), numbers whose CSV text is short or long as the first (echo's
    # answer, kept as text and read as a number in C).
    lengths = [0, 1, 3, 4, 5, 8, 9, 254, 255, 256, 700, 16000]
    rows = [(i, "t" * lengths[i % len(lengths)], i * 1.000123456789 if i % 2 else float(i), i) for i in range(600)]
    make_table(db, rows, txt_type="MEDIUMTEXT")
    batched, per_row, hits = batched_and_per_row(
        db, "SELECT id, v, aws_sagemaker_invoke_endpoint_real('echo-long', 'REAL', 50, v, txt) FROM memo_items",
        "sqlml_warm_sagemaker('echo-long', 50, v, txt)")
    assert batched == per_row
    assert all(answer == v for _, v, answer in batched)  # echo: the first field, its own row's number
    assert hits == 600


def test_a_whole_number_is_one_key_for_int_and_real_arguments(db, fake):
    # The seed's anomaly_score(value REAL) over an INT column: the warm-up sees the INT,
    # the wrapper's call the REAL; the engine sends "76" for both, so they share an answer.
    from sqlml.translate import translate

    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("DROP FUNCTION IF EXISTS memo_score")
        cur.execute(translate("CREATE FUNCTION memo_score(value REAL) RETURNS REAL ALIAS "
                              "AWS_SAGEMAKER_INVOKE_ENDPOINT ENDPOINT NAME 'sum-whole'"))
    make_table(db, [(i, None, 0, (i % 40) - 20) for i in range(400)])
    before = memo_hits(db)
    rows = db.query("SELECT id, n, memo_score(n) FROM memo_items "
                    "WHERE (SELECT sqlml_warm_sagemaker('sum-whole', 10000, n) FROM memo_items) >= 0 ORDER BY id")
    assert [answer for _, _, answer in rows] == [float(n) for _, n, _ in rows]
    assert memo_hits(db) - before == 400
    assert fake.stats()["requests"] == 1


@pytest.mark.parametrize("kind, sql_type", [("real", "REAL"), ("int", "TINYINT"), ("int", "BIGINT")])
def test_answers_c_does_not_read_strictly_take_the_python_path_with_the_same_result(db, fake, kind, sql_type):
    # What an endpoint may answer: plain numerals C converts itself, and forms only Python
    # reads (spaces, underscores, a trailing .0 for an INT) or refuses (words, overflow).
    answers = ["76", "+76", "-0", "007", "0.5", ".5", "5.", "1e5", "1E+05", "-2.5e-3", "76.0", " 5", "1_000",
               "1e400", "abc", "nan", "inf", "0x10", "300", "-129", "9223372036854775807", "99999999999999999999"]
    make_table(db, [(i, a, 0, 0) for i, a in enumerate(answers)])
    with db.settings(on_error="null"):
        batched, per_row, hits = batched_and_per_row(
            db, f"SELECT id, aws_sagemaker_invoke_endpoint_{kind}('echo-strict', '{sql_type}', 100, txt) "
                f"FROM memo_items",
            "sqlml_warm_sagemaker('echo-strict', 100, txt)")
    assert batched == per_row
    assert hits > 0  # the plain numerals
    assert hits < len(answers)  # and not the rest
    if kind == "real":
        assert dict(batched)[answers.index("1e5")] == 100000.0
        assert dict(batched)[answers.index("abc")] is None


def test_sentiment_and_confidence_share_the_memo(db, fake):
    texts = [f"good {i}" if i % 3 == 0 else f"bad {i}" if i % 3 == 1 else f"plain {i}" for i in range(120)]
    make_table(db, [(i, t, 0, 0) for i, t in enumerate(texts)])
    batched, per_row, hits = batched_and_per_row(
        db, "SELECT id, txt, aws_comprehend_detect_sentiment(txt, 'en'), "
            "aws_comprehend_detect_sentiment_confidence(txt, 'en') FROM memo_items",
        "sqlml_warm_comprehend(txt, 'en')")
    assert batched == per_row
    for _, txt, label, confidence in batched:
        expected, scores = fake_sentiment(txt)
        assert (label, confidence) == (expected, pytest.approx(scores[expected.capitalize()]))
    assert hits == 2 * len(texts)


def test_no_memo_when_the_cache_is_off_and_a_full_memo_leaves_the_rest_to_python(db, fake):
    make_table(db, [(i, None, float(i), 0) for i in range(200)])
    select = "SELECT id, aws_sagemaker_invoke_endpoint_real('echo-bound', 'REAL', 50, v) FROM memo_items"
    warm = "sqlml_warm_sagemaker('echo-bound', 50, v)"
    with db.settings(cache_enabled="off"):
        batched, per_row, hits = batched_and_per_row(db, select, warm)
        assert batched == per_row == [(i, float(i)) for i in range(200)]
        assert hits == 0
    with db.settings(cache_max_entries="60"):
        batched, per_row, hits = batched_and_per_row(db, select, warm)
        assert batched == per_row == [(i, float(i)) for i in range(200)]
        assert 0 < hits <= 60


def test_concurrent_statements_each_read_their_own_memo(db, fake):
    # Same endpoint, same table shape, different values per connection: a memo is one
    # connection's; answers from another's would show as wrong values.
    def run(w: int):
        with db.connect() as conn, conn.cursor() as cur:
            # Not TEMPORARY: MySQL cannot open a temporary table twice in one statement.
            cur.execute(f"DROP TABLE IF EXISTS memo_conc{w}")
            cur.execute(f"CREATE TABLE memo_conc{w} (id INT PRIMARY KEY, v DOUBLE)")
            for round_ in range(3):
                cur.execute(f"DELETE FROM memo_conc{w}")
                cur.executemany(f"INSERT INTO memo_conc{w} VALUES (%s, %s)",
                                [(i, w * 100000 + round_ * 10000 + i + 0.5) for i in range(2000)])
                cur.execute(f"SELECT id, v, aws_sagemaker_invoke_endpoint_real('echo-conc', 'REAL', 300, v) "
                            f"FROM memo_conc{w} "
                            f"WHERE (SELECT sqlml_warm_sagemaker('echo-conc', 300, v) FROM memo_conc{w}) >= 0")
                rows = cur.fetchall()
                assert len(rows) == 2000
                assert all(answer == v for _, v, answer in rows)
        return True

    before = memo_hits(db)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, range(4)))
    assert memo_hits(db) - before > 0



def test_numbers_the_warm_up_writes_in_c_are_the_keys_python_writes(db, fake):
    # Numeric rows reach Python as CSV lines written in C (sqlml_udf.c warm_row); the
    # scalar path writes its keys in Python (_encode_real). After the warm-up, a separate
    # statement (no memo) must find every row in the cache: no request at all.
    import math
    import random

    rng = random.Random(11)
    values = [0.0, -0.0, 1.0, -1.0, 76.0, 70.0, 1e15, -1e15, 1e15 - 1, 1e15 - 0.5, 1e16, 2.0**53, 1e-7, 1.5e-5,
              1.5, 0.1, 1 / 3, 2 / 3, 1e22, 1e-320, 5e-324, 2.2250738585072014e-308, 123456789012345.0,
              12345678901234.5, 0.25, 100.0, 1e100, -1e-100, 9.999999999999999e14, 0.30000000000000004,
              1e-4, 0.0001234, -0.001, 99999999999999.9, 9999999999999.99, 1234.5678, 0.1 + 0.2, 1e-5, 9.5e-5]
    values += [rng.uniform(-1e6, 1e6) for _ in range(600)] + [round(rng.uniform(-1e4, 1e4), 2) for _ in range(600)]
    values += [float(rng.randint(-10**6, 10**6)) for _ in range(200)]
    assert all(math.isfinite(v) for v in values)
    make_table(db, [(i, None, v, i) for i, v in enumerate(values)])
    db.scalar("SELECT sqlml_cache_clear()")
    sent = db.scalar("SELECT sqlml_warm_sagemaker('echo-keys', 10000, v, n) FROM memo_items")
    assert sent == len(values)
    fake.clear_stats()
    answers = db.query("SELECT id, aws_sagemaker_invoke_endpoint_real('echo-keys', 'REAL', 10000, v, n) "
                       "FROM memo_items ORDER BY id")
    assert fake.stats()["requests"] == 0
    assert [a for _, a in answers] == values  # echo: each row's own first feature


def test_a_prepared_statement_starts_each_execution_without_the_last_ones_memo(db, fake):
    # Each EXECUTE is a statement of its own: after sqlml_cache_clear() the warm-up must
    # send again, and no answer may come from the previous execution's memo.
    make_table(db, [(i, None, i + 0.5, 0) for i in range(300)])
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("PREPARE memo_ps FROM "
                    "'SELECT id, aws_sagemaker_invoke_endpoint_real(''echo-ps'', ''REAL'', 100, v) "
                    "FROM memo_items WHERE (SELECT sqlml_warm_sagemaker(''echo-ps'', 100, v) FROM memo_items) >= 0'")
        for _ in range(3):
            cur.execute("SELECT sqlml_cache_clear()")
            fake.clear_stats()
            before = memo_hits(db)
            cur.execute("EXECUTE memo_ps")
            assert sorted(cur.fetchall()) == [(i, i + 0.5) for i in range(300)]
            assert fake.stats()["requests"] == 3
            assert memo_hits(db) - before == 300


def test_a_killed_warm_up_leaves_the_server_and_the_next_statement_whole(db, fake):
    # KILL QUERY lands while the warm-up's batches are in flight (200 ms each): the memo
    # and the lane are dropped with the statement, and the same statement then runs whole.
    make_table(db, [(i, None, i + 0.25, 0) for i in range(2000)])
    fake.configure(latency_ms_by_endpoint={"echo-kill": 200})
    query = ("SELECT id, aws_sagemaker_invoke_endpoint_real('echo-kill', 'REAL', 100, v) FROM memo_items "
             "WHERE (SELECT sqlml_warm_sagemaker('echo-kill', 100, v) FROM memo_items) >= 0 ORDER BY id")
    with db.connect() as victim, db.connect() as killer:
        with victim.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            victim_id = cur.fetchone()[0]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(lambda: victim.cursor().execute(query))
            deadline = time.monotonic() + 10
            while not fake.stats(log=False)["requests"] and time.monotonic() < deadline:
                time.sleep(0.02)
            with killer.cursor() as k:
                k.execute(f"KILL QUERY {int(victim_id)}")
            with pytest.raises(pymysql.err.OperationalError) as err:
                running.result(30)
            assert err.value.args[0] == 1317, err.value  # ER_QUERY_INTERRUPTED
    fake.configure(latency_ms_by_endpoint={})
    assert db.query(query) == [(i, i + 0.25) for i in range(2000)]


def test_sqlml_cache_clear_retires_the_memo_of_a_statement_already_running(db, fake):
    # Issue 12.8: the memo lives as long as its statement; sqlml_cache_clear() from
    # another connection must stop it answering, so the rest of the statement asks the
    # service again (the answers stay each row's own).
    make_table(db, [(i, None, i + 0.5, 0) for i in range(200)])
    db.scalar("SELECT sqlml_cache_clear()")
    query = ("SELECT id, SLEEP(0.01), aws_sagemaker_invoke_endpoint_real('echo-retire', 'REAL', 500, v) "
             "FROM memo_items WHERE (SELECT sqlml_warm_sagemaker('echo-retire', 500, v) FROM memo_items) >= 0 "
             "ORDER BY id")
    fake.clear_stats()
    before = memo_hits(db)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(db.query, query)
        time.sleep(0.8)  # the warm-up's one request is done, reads are under way (10 ms a row)
        assert not running.done()
        db.scalar("SELECT sqlml_cache_clear()")
        rows = running.result(60)
    assert [(i, a) for i, _, a in rows] == [(i, i + 0.5) for i in range(200)]
    hits = memo_hits(db) - before
    requests = fake.stats()["requests"]
    assert 0 < hits < 200, hits  # answered from the memo until the clear, not after
    assert requests == 1 + (200 - hits), (requests, hits)  # the warm-up, then one per row left
