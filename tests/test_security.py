"""Attacks by low-privilege users on sqlml's privileges, status, settings and answers.

Issue 12 items 4-7 and issue 13 items 2 and 6, each run as a reviewer ran it: a user the
test creates (unique name, dropped afterwards) logs in through PyMySQL and tries. A failure
means one of these holds again: a user without an AWS_* role reaches a service; a user
without the admin privilege for variables reads sqlml's settings or which endpoints others
call; a setting that carries a secret or breaks every call is accepted; an ON/OFF variable
takes a word the server's own booleans refuse; one bad line in sqlml.cnf stops every
function; a NULL row makes later rows NULL; one user's input shows up in another user's
errors. Every setting a test changes is put back in a `finally`, so the next test sees the
server as conftest left it.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from decimal import Decimal

import pymysql
import pytest

from sqlml import installer
from tests.conftest import installer_python

PASSWORD = "pw-sqlml-sec"
ECHO = "echo-sec"
INVOKE = f"SELECT aws_sagemaker_invoke_endpoint_real('{ECHO}', 'REAL', 1, 42)"
SAGEMAKER, COMPREHEND, S3 = "AWS_SAGEMAKER_ACCESS", "AWS_COMPREHEND_ACCESS", "AWS_SELECT_S3_ACCESS"
# Every entry point a role guards, with the role its refusal must name.
GUARDED = [
    (INVOKE, SAGEMAKER),
    ("SELECT aws_comprehend_detect_sentiment('I love it', 'en')", COMPREHEND),
    (f"SELECT sqlml_warm_sagemaker('{ECHO}', 10, n) FROM numbers WHERE n <= 3", SAGEMAKER),
    ("SELECT sqlml_export_s3('s3://sec-bucket/stolen', 'FORMAT CSV', n) FROM numbers WHERE n <= 3", S3),
]
URL_VARIABLES = ("sqlml_sagemaker_endpoint_url", "sqlml_comprehend_endpoint_url", "sqlml_sts_endpoint_url",
                 "sqlml_s3_endpoint_url")
PUBLIC_STATUS_KEYS = {"aurora", "cache", "extended", "details"}


# ---- users, roles and connections ------------------------------------------------------------

class Accounts:
    """Creates users (each with SELECT on the test schema, nothing else unless asked) and
    roles with names unique to one test, and drops them all when the test ends."""

    def __init__(self, db):
        self.db = db
        self.suffix = uuid.uuid4().hex[:6]
        self.users: list[str] = []
        self.roles: list[str] = []

    def user(self, hint: str, *grants: str) -> str:
        """A new user; each of `grants` is a statement with {user} for the account."""
        name = f"sec_{hint}_{self.suffix}"
        account = f"'{name}'@'%'"
        with self.db.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE USER {account} IDENTIFIED BY '{PASSWORD}'")
            self.users.append(name)
            cur.execute(f"GRANT SELECT ON sqlml_test.* TO {account}")
            for grant in grants:
                cur.execute(grant.format(user=account))
        return name

    def role(self, hint: str, *granted_roles: str) -> str:
        name = f"sec_{hint}_{self.suffix}"
        with self.db.connect() as conn, conn.cursor() as cur:
            cur.execute(f"CREATE ROLE {name}")
            self.roles.append(name)
            for role in granted_roles:
                cur.execute(f"GRANT {role} TO {name}")
        return name

    def grant_default_role(self, user: str, role: str) -> None:
        """GRANT role TO user, active at every login (each server's own syntax)."""
        account = f"'{user}'@'%'"
        with self.db.connect() as conn, conn.cursor() as cur:
            cur.execute(f"GRANT {role} TO {account}")
            if self.db.flavor == "mysql":
                cur.execute(f"ALTER USER {account} DEFAULT ROLE {role}")
            else:
                cur.execute(f"SET DEFAULT ROLE {role} FOR {account}")

    def drop_all(self) -> None:
        with self.db.connect() as conn, conn.cursor() as cur:
            for name in self.users:
                cur.execute(f"DROP USER IF EXISTS '{name}'@'%'")
            for name in self.roles:
                cur.execute(f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
def accounts(db):
    made = Accounts(db)
    try:
        yield made
    finally:
        made.drop_all()


def connect_as(db, user: str) -> pymysql.connections.Connection:
    return db.connect(user=user, password=PASSWORD)


def sql_error(db, sql: str, conn=None, args=None) -> tuple[int, str]:
    with pytest.raises(pymysql.MySQLError) as err:
        db.query(sql, args, conn=conn)
    code, message = err.value.args[0], str(err.value.args[1])
    assert "internal error" not in message.lower(), message
    return code, message


def denied(db, conn, sql: str, role: str) -> None:
    code, message = sql_error(db, sql, conn)
    assert code == 1227, (sql, code, message)
    assert "access denied" in message and role in message, message


# ---- a trap for S3: any connection to it means the export was not refused first --------------

class ConnectionTrap:
    """A TCP listener on 127.0.0.1 that counts connections and closes each at once."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@contextlib.contextmanager
def global_variable(db, name: str, value):
    """SET GLOBAL name = value (a literal as written, or a %s argument) for the block, then
    the value it had before (a variable back at its default leaves the setting to sqlml.cnf)."""
    before = db.scalar(f"SELECT @@GLOBAL.{name}")
    try:
        db.query(f"SET GLOBAL {name} = %s", (value,))
        yield
    finally:
        db.query(f"SET GLOBAL {name} = %s", (before,))


@pytest.fixture
def s3_trap(db):
    trap = ConnectionTrap()
    try:
        with global_variable(db, "sqlml_s3_endpoint_url", trap.url):
            yield trap
    finally:
        trap.close()


# ---- 12.5: only an AWS_* role opens a service ------------------------------------------------

@pytest.mark.server("mariadb")
def test_mariadb_global_or_schema_execute_is_not_an_aws_role(db, fake, accounts, s3_trap):
    """Old behaviour: the check asked check_routine_access(EXECUTE) on the marker procedure,
    which a global `EXECUTE ON *.*` or a database-level `EXECUTE ON sqlml.*` satisfies, so
    both users below called every function and passed the export's check."""
    for hint, grant in (("gexec", "GRANT EXECUTE ON *.* TO {user}"), ("dbexec", "GRANT EXECUTE ON sqlml.* TO {user}")):
        user = accounts.user(hint, grant)
        with connect_as(db, user) as conn:
            for sql, role in GUARDED:
                denied(db, conn, sql, role)
    assert fake.stats(log=False)["requests"] == 0
    assert s3_trap.connections == 0  # refused before any S3 call


@pytest.mark.server("mysql")
def test_mysql_global_execute_is_not_an_aws_role(db, fake, accounts, s3_trap):
    """MySQL's equivalent of the MariaDB attack. The dynamic-privilege check refused this
    before the fix too: this guards it, it reproduces nothing."""
    user = accounts.user("gexec", "GRANT EXECUTE ON *.* TO {user}")
    with connect_as(db, user) as conn:
        for sql, role in GUARDED:
            denied(db, conn, sql, role)
    assert fake.stats(log=False)["requests"] == 0
    assert s3_trap.connections == 0


def test_the_role_granted_directly_or_through_a_nested_role_opens_sagemaker_until_set_role_none(
        db, fake, accounts):
    """The fix narrowed the MariaDB check to routine-level grants: it must still see a role
    held directly and one held through another role (role analyst granted the SageMaker
    role). On the old code this passed too; a narrowing that forgot roles fails it."""
    direct = accounts.user("direct")
    accounts.grant_default_role(direct, SAGEMAKER)
    analyst = accounts.role("analyst", SAGEMAKER)
    nested = accounts.user("nested")
    accounts.grant_default_role(nested, analyst)
    for k, user in enumerate((direct, nested)):
        fake.clear_stats()
        value = 1000 + 10 * k  # its own inputs: the result cache does not answer for the service
        with connect_as(db, user) as conn:
            assert db.query(INVOKE.replace("42", str(value)), conn=conn) == [(float(value),)], user
            assert db.scalar(f"SELECT sqlml_warm_sagemaker('{ECHO}', 10, n + {value}) FROM numbers WHERE n <= 3",
                             conn=conn) is not None
            assert db.query("SELECT CURRENT_ROLE()", conn=conn)[0][0] is not None
            # The role opens SageMaker only.
            denied(db, conn, "SELECT aws_comprehend_detect_sentiment('I love it', 'en')", COMPREHEND)
            db.query("SET ROLE NONE", conn=conn)
            denied(db, conn, INVOKE.replace("42", "43"), SAGEMAKER)
        endpoints = {entry["endpoint"] for entry in fake.stats()["log"]}
        assert endpoints == {ECHO}, (user, endpoints)  # the allowed calls reached the service


# ---- 12.4: sqlml_status() hides settings and other users' endpoints -------------------------

def status_as(db, user: str) -> tuple[dict, str]:
    with connect_as(db, user) as conn:
        text = db.scalar("SELECT sqlml_status()", conn=conn)
    return json.loads(text), text


def test_status_shows_settings_and_targets_only_to_variable_admins(db, fake, accounts):
    """Old behaviour: anyone saw every setting (endpoint URLs, role ARNs) and every
    endpoint's name and usage in sqlml_status()."""
    secret_endpoint = f"echo-private-{accounts.suffix}"
    assert db.scalar(f"SELECT aws_sagemaker_invoke_endpoint_real('{secret_endpoint}', 'REAL', 1, 7)") == 7.0
    plain = accounts.user("plain")
    with_role = accounts.user("role")
    accounts.grant_default_role(with_role, SAGEMAKER)
    for user in (plain, with_role):
        status, text = status_as(db, user)
        assert set(status) <= PUBLIC_STATUS_KEYS, sorted(status)
        assert "aurora" in status  # the counters stay public (SHOW GLOBAL STATUS has them)
        assert "SUPER" in status["details"], status["details"]  # says what would show more
        assert secret_endpoint not in text and db.fake.url not in text, text

    admin_grants = {"mariadb": ["GRANT SUPER ON *.* TO {user}"],
                    "mysql": ["GRANT SYSTEM_VARIABLES_ADMIN ON *.* TO {user}", "GRANT SUPER ON *.* TO {user}"]}
    for i, grant in enumerate(admin_grants[db.flavor]):
        admin = accounts.user(f"admin{i}", grant)
        status, _ = status_as(db, admin)
        assert {"aurora", "settings", "settings_error", "targets"} <= set(status), (grant, sorted(status))
        assert status["settings"]["sagemaker_endpoint_url"] == db.fake.url
        assert secret_endpoint in {t["target"] for t in status["targets"]}, status["targets"]


def test_only_variable_admins_clear_the_shared_cache(db, fake, accounts):
    """sqlml_cache_clear() empties the cache every user's statements share and retires
    the memos of statements running now: it raises everyone's cost. Old behaviour: any
    holder of an ML role could call it."""
    key = f"echo-clear-{accounts.suffix}"
    assert db.scalar(f"SELECT aws_sagemaker_invoke_endpoint_real('{key}', 'REAL', 1, 7)") == 7.0
    with_role = accounts.user("clearer")
    accounts.grant_default_role(with_role, SAGEMAKER)
    with connect_as(db, with_role) as conn:
        denied(db, conn, "SELECT sqlml_cache_clear()", "SUPER")
        fake.clear_stats()
        assert db.scalar(f"SELECT aws_sagemaker_invoke_endpoint_real('{key}', 'REAL', 1, 7)", conn=conn) == 7.0
        assert fake.stats(log=False)["requests"] == 0  # root's answer is still cached
    grant = {"mariadb": "GRANT SUPER ON *.* TO {user}", "mysql": "GRANT SYSTEM_VARIABLES_ADMIN ON *.* TO {user}"}
    admin = accounts.user("cleaner", grant[db.flavor])
    with connect_as(db, admin) as conn:
        assert db.scalar("SELECT sqlml_cache_clear()", conn=conn) >= 1


# ---- 12.4: URL settings carry no secrets --------------------------------------------------------

@pytest.mark.parametrize("variable", URL_VARIABLES)
def test_a_url_setting_with_credentials_query_or_fragment_is_refused(db, fake, variable):
    """Old behaviour: only user@host was refused; `?token=...` and `#...` were stored, and
    sqlml_status() and error messages showed them."""
    before = db.scalar(f"SELECT @@GLOBAL.{variable}")
    try:
        for bad in ("http://user:s3cr3t@127.0.0.1:1/", "http://127.0.0.1:1/?token=s3cr3t",
                    "http://127.0.0.1:1/#s3cr3t", "http://127.0.0.1:1/x?"):
            code, message = sql_error(db, f"SET GLOBAL {variable} = %s", args=(bad,))
            assert code == 1231, (bad, code, message)
            assert variable in message and "s3cr3t" not in message, message
            assert db.scalar(f"SELECT @@GLOBAL.{variable}") == before
        db.query(f"SET GLOBAL {variable} = %s", (db.fake.url,))  # plain http://127.0.0.1:<port>
        assert db.scalar(f"SELECT @@GLOBAL.{variable}") == db.fake.url
        if variable == "sqlml_sagemaker_endpoint_url":
            assert db.scalar(INVOKE) == 42.0
    finally:
        db.query(f"SET GLOBAL {variable} = %s", (before,))
    assert db.scalar(f"SELECT @@GLOBAL.{variable}") == before


# ---- 12.7: ON/OFF variables take whole words only ---------------------------------------------

@pytest.mark.parametrize("literal", ["'OF'", "'T'", "'TRUE'", "'FALSE'", "'1'", "1.0", "2", "-1", "'ONN'", "''"])
def test_an_on_off_variable_refuses_prefixes_and_non_integers(db, literal):
    """Old behaviour: a string was matched as a prefix of ON/OFF/TRUE/FALSE, so 'OF' gave
    0, 'T' and 'TRUE' gave 1, 'FALSE' gave 0 (those four fail on the old code); the other
    values were refused before too and are kept as guards."""
    before = db.scalar("SELECT @@GLOBAL.sqlml_coalesce")
    try:
        code, message = sql_error(db, f"SET GLOBAL sqlml_coalesce = {literal}")
        # Both servers refuse a DECIMAL for a boolean plugin variable themselves, before
        # sqlml's check is asked (1232, ER_WRONG_TYPE_FOR_VAR): that case guards, the
        # others reach sqlml's check and reproduce the prefix matching.
        assert code == 1231 or (code == 1232 and literal == "1.0"), (literal, code, message)
        assert db.scalar("SELECT @@GLOBAL.sqlml_coalesce") == before
    finally:
        db.query(f"SET GLOBAL sqlml_coalesce = {int(before)}")


def test_an_on_off_variable_takes_the_servers_own_spellings(db):
    before = db.scalar("SELECT @@GLOBAL.sqlml_coalesce")
    try:
        for literal, value in (("'on'", 1), ("'OFF'", 0), ("'On'", 1), ("'Off'", 0), ("1", 1), ("0", 0), ("ON", 1)):
            db.query(f"SET GLOBAL sqlml_coalesce = {literal}")
            assert db.scalar("SELECT @@GLOBAL.sqlml_coalesce") == value, literal
    finally:
        db.query(f"SET GLOBAL sqlml_coalesce = {int(before)}")


# ---- 13.6: the Accept header is a media type -------------------------------------------------

def test_an_accept_header_value_that_would_break_every_call_is_refused(db, fake):
    """Old behaviour: a line break was stored and every SageMaker call then failed with
    `internal error: ValueError: Invalid header value`; X'FF' was refused as
    `internal error: UnicodeDecodeError`."""
    before = db.scalar("SELECT @@GLOBAL.sqlml_sagemaker_accept")
    try:
        for bad in ("CONCAT('text/csv', CHAR(10), 'X: 1')", "CONCAT('text/csv', CHAR(13), 'X: 1')",
                    "CONCAT('text/csv', CHAR(13, 10), 'X-Injected: 1')", "X'FF'", "'text/csv, '"):
            code, message = sql_error(db, f"SET GLOBAL sqlml_sagemaker_accept = {bad}")
            assert code == 1231, (bad, code, message)
            assert "sqlml_sagemaker_accept" in message, message
            assert db.scalar("SELECT @@GLOBAL.sqlml_sagemaker_accept") == before
        assert db.scalar(INVOKE) == 42.0  # calls still work
        for good in ("text/csv", "application/json; charset=utf-8", "text/csv;q=0.9, application/json"):
            db.query("SET GLOBAL sqlml_sagemaker_accept = %s", (good,))
            assert db.scalar("SELECT @@GLOBAL.sqlml_sagemaker_accept") == good
    finally:
        db.query("SET GLOBAL sqlml_sagemaker_accept = %s", (before,))
    assert db.scalar(INVOKE.replace("42", "44")) == 44.0


# ---- 12.6: a malformed sqlml.cnf keeps the last good settings --------------------------------

def settings_error(db):
    return db.status()["settings_error"]


def wait_for(predicate, what: str, timeout_s: float = 10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def new_log_lines(path, start: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read().decode("utf-8", "replace").splitlines()


def test_a_malformed_settings_file_keeps_the_last_good_settings_and_says_why(db, fake):
    """Old behaviour: one line configparser cannot read made every sqlml function fail
    with `internal error: ParsingError`, and nothing said why."""
    good = installer.cnf_text(db.base_settings, installer_python())
    path = str(db.cnf_path)
    assert settings_error(db) is None
    log_path = db.server.error_log
    log_start = log_path.stat().st_size if log_path.exists() else 0  # the log outlives a test run
    try:
        installer.write_atomically(path, (good + "this is not a setting\n").encode())
        error = wait_for(lambda: settings_error(db), "settings_error after writing a malformed sqlml.cnf")
        assert path in error, error
        # Every function keeps working, on the last good settings (the fake's URL).
        assert db.scalar(INVOKE) == 42.0
        assert db.scalar("SELECT aws_comprehend_detect_sentiment('I love it', 'en')") == "POSITIVE"
        assert db.status()["settings"]["sagemaker_endpoint_url"] == db.fake.url
        line = wait_for(lambda: next((line for line in new_log_lines(log_path, log_start)
                                      if "settings not applied" in line), None), "the error log line")
        assert path in line, line
    finally:
        installer.write_atomically(path, good.encode())
    wait_for(lambda: settings_error(db) is None, "settings_error to clear after the good file came back")
    assert db.scalar(INVOKE.replace("42", "45")) == 45.0


# ---- 13.2: NULLs between rows stay per row ---------------------------------------------------
# Not an attack: a silent wrong value. Every return type, one statement each, NULL inputs
# between valid ones; with batch size 1 and > 1.

RETURN_TYPES = [
    ("real", "REAL", float),
    ("int", "INTEGER", int),
    ("int", "BIGINT", int),
    # The exact digits as text (docs/sql.md: the server's DECIMAL UDF type keeps NULL flags).
    ("decimal", "DECIMAL(10,3)", lambda v: str(Decimal(v).quantize(Decimal("0.001")))),
    ("string", "VARCHAR(20)", str),
]
INPUTS = [5, None, 7, 9, None, None, 11, 13]


def rows_of(values: list) -> str:
    return " UNION ALL ".join(f"SELECT {i} k, {'NULL' if v is None else v} v" for i, v in enumerate(values))


def answers(rows: list[tuple]) -> list:
    return [(Decimal(str(r)) if isinstance(r, Decimal) else r) for _, r in rows]


@pytest.mark.parametrize("batch", [1, 100])
@pytest.mark.parametrize("suffix, declared, convert", RETURN_TYPES, ids=[t[1] for t in RETURN_TYPES])
def test_a_null_input_between_rows_gives_null_for_that_row_only(db, fake, suffix, declared, convert, batch):
    """Old behaviour (DECIMAL): the result path set is_null for a NULL row and never reset
    it, so 5, NULL, 7, 9 came back as 5.000, NULL, NULL, NULL (test_sagemaker.py checks
    the server's own NULL flag: IS NULL, COALESCE, INSERT ... SELECT). REAL, INTEGER, BIGINT and
    VARCHAR answered correctly before: their cases guard the same flag on their paths."""
    sql = (f"SELECT v, aws_sagemaker_invoke_endpoint_{suffix}('{ECHO}', '{declared}', {batch}, v) "
           f"FROM ({rows_of(INPUTS)}) q")
    expected = [(v, None if v is None else convert(v)) for v in INPUTS]
    assert db.query(sql) == expected
    # The brief's own shape, as the issue ran it.
    brief = (f"SELECT v, aws_sagemaker_invoke_endpoint_{suffix}('{ECHO}', '{declared}', {batch}, v) "
             f"FROM (SELECT 5 v UNION ALL SELECT NULL UNION ALL SELECT 7 UNION ALL SELECT 9) q")
    assert db.query(brief) == [(v, None if v is None else convert(v)) for v in (5, None, 7, 9)]


@pytest.mark.parametrize("suffix, declared, convert", RETURN_TYPES[:4], ids=[t[1] for t in RETURN_TYPES[:4]])
def test_a_failed_row_under_on_error_null_leaves_later_rows_their_values(db, fake, suffix, declared, convert):
    """A row whose answer does not fit (echo of 'x' is no number) becomes NULL with a
    warning under on_error = null; the rows after it keep their own answers. Old
    behaviour (DECIMAL): every row after the failed one was NULL too."""
    values = ["5", "'x'", "7", "NULL", "'y'", "9"]
    union = " UNION ALL ".join(f"SELECT {i} k, {v} v" for i, v in enumerate(values))
    with global_variable(db, "sqlml_on_error", "null"), db.connect() as conn:
        rows = db.query(f"SELECT k, aws_sagemaker_invoke_endpoint_{suffix}('{ECHO}', '{declared}', 1, v) "
                        f"FROM ({union}) q", conn=conn)
        warnings = conn.show_warnings()
    assert [r for _, r in rows] == [convert(5), None, convert(7), None, None, convert(9)]
    assert len(warnings) >= 2, warnings


# ---- 12.2: two users' calls share requests; one's bad input never reaches the other ------------

def test_concurrent_low_privilege_users_see_only_their_own_errors(db, fake, accounts):
    """Old behaviour: when one user's bad row shared a request with another user's rows,
    both failed, and the other user's error quoted the first one's input
    (`could not convert string to float: 'SECRET-of-A'`)."""
    secret = "SECRET-of-A"
    endpoint = f"sum-xsec-{accounts.suffix}"
    a_user, b_user = accounts.user("a"), accounts.user("b")
    for user in (a_user, b_user):
        accounts.grant_default_role(user, SAGEMAKER)
    fake.configure(latency_ms_by_endpoint={endpoint: 10})
    statements = 200
    seen_by_b: list[str] = []
    results = {}
    start = threading.Barrier(2)

    def run(user: str, args: list[str]) -> None:
        ok, failed = 0, 0
        with connect_as(db, user) as conn, conn.cursor() as cur:
            start.wait()
            for arg in args:
                try:
                    cur.execute(f"SELECT aws_sagemaker_invoke_endpoint_real('{endpoint}', 'REAL', 100, %s)", (arg,))
                    value = cur.fetchone()[0]
                    assert value == float(arg), (user, arg, value)
                    ok += 1
                    warnings = conn.show_warnings()
                    if user == b_user:
                        seen_by_b.extend(str(w) for w in warnings or ())
                except pymysql.MySQLError as exc:
                    failed += 1
                    if user == b_user:
                        seen_by_b.append(str(exc.args))
        results[user] = (ok, failed)

    a_args = [secret if i % 2 == 0 else str(100_000 + i) for i in range(statements)]
    b_args = [str(200_000 + i) for i in range(statements)]
    threads = [threading.Thread(target=run, args=(a_user, a_args)), threading.Thread(target=run, args=(b_user, b_args))]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert time.monotonic() - started < 30
    assert results[b_user] == (statements, 0), seen_by_b[:3]
    assert results[a_user] == (statements // 2, statements // 2)
    assert not any(secret in m for m in seen_by_b), [m for m in seen_by_b if secret in m][:3]
    assert max(fake.stats(log=False)["items_by_endpoint"][endpoint]) > 1  # the users did share requests
