"""Many connections at once, and DROP/CREATE FUNCTION under load: right answers, server up."""

import concurrent.futures
import threading

import pymysql

from sqlml import installer
from tests.doubles.fakeaws import fake_sentiment

TEXTS = ["good day", "bad day", "a day", "great but awful", "love it", "worst ever"]


def test_eight_connections_each_get_their_own_answers(db, fake):
    def work(worker: int) -> int:
        checked = 0
        with db.connect() as conn:
            for i in range(15):
                text = f"{TEXTS[(worker + i) % len(TEXTS)]} w{worker} i{i}"
                label = db.scalar("SELECT aws_comprehend_detect_sentiment(%s, 'en')", (text,), conn=conn)
                assert label == fake_sentiment(text)[0], (text, label)
                value = db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('sum-c', 'REAL', 1, %s, %s)",
                                  (worker, i), conn=conn)
                assert value == worker + i
                checked += 2
        return checked

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(work, range(8))) == 8 * 30
    assert fake.stats()["max_in_flight"] >= 2  # the calls really overlapped


def test_drop_and_create_function_while_other_connections_query(db, fake):
    stop = threading.Event()
    answered = [0]
    errors: list[str] = []

    def query_loop():
        with db.connect() as conn:
            while not stop.is_set():
                try:
                    value = db.scalar("SELECT SUM(aws_sagemaker_invoke_endpoint_real('sum-d', 'REAL', 1, n)) "
                                      "FROM numbers WHERE n <= 5", conn=conn)
                    assert value == 15
                    answered[0] += 1
                except pymysql.err.MySQLError as exc:  # the function may be gone for a moment
                    errors.append(exc.args[1])

    threads = [threading.Thread(target=query_loop) for _ in range(4)]
    for t in threads:
        t.start()
    ddl_errors: list[str] = []
    try:
        with db.connect(database="mysql") as conn, conn.cursor() as cur:
            for _ in range(20):
                for ddl in ("DROP FUNCTION aws_sagemaker_invoke_endpoint_real",
                            "CREATE FUNCTION aws_sagemaker_invoke_endpoint_real RETURNS REAL SONAME 'sqlml.so'"):
                    try:
                        cur.execute(ddl)
                    except pymysql.err.MySQLError as exc:
                        if db.kind != "mysql":
                            raise
                        ddl_errors.append(exc.args[1])  # see the MySQL note below
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert db.server.is_alive()
    if db.kind == "mysql":
        # Whatever the assertions below find, leave a server whose function registry
        # agrees with mysql.func for the tests after this one (see the MySQL note below),
        # and every function installed again (a failed CREATE may have left no row).
        db.server.restart()
        with db.connect(database="mysql") as conn:
            installer.install(conn, db.base_settings, log=lambda *_: None)
    assert answered[0] > 0
    # While the function is being dropped or created, the server itself says so.
    unexpected = [e for e in errors if "does not exist" not in e and "Can't load function" not in e]
    assert not unexpected, unexpected[:5]
    if db.kind == "mysql":
        # Oracle MySQL 9.7 (not MariaDB): a loadable function dropped while other
        # connections are inside it can vanish from the server's in-memory function
        # registry while mysql.func still lists it (the server renames in-use entries
        # to "*" on DROP, in a map keyed by name), so a later DROP says "does not exist"
        # and CREATE fails writing mysql.func; a restart reloads it. Server behaviour,
        # not ours: the server stayed up, which is what this test is about.
        assert all("does not exist" in e or "mysql.func" in e or "is not defined" in e for e in ddl_errors), \
            ddl_errors[:3]
    assert db.scalar("SELECT aws_sagemaker_invoke_endpoint_real('sum-d', 'REAL', 1, 2, 3)") == 5
    # and a full uninstall/install cycle keeps working too
    with db.connect(database="mysql") as conn:
        installer.uninstall(conn, log=lambda *_: None)
    for plugin in installer.PLUGINS:  # MySQL unloads them once their sessions end
        db.wait_plugin_gone(plugin)
    with db.connect(database="mysql") as conn:
        installer.install(conn, db.base_settings, log=lambda *_: None)
    assert db.scalar("SELECT sqlml_echo_int(9)") == 9
