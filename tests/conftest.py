"""Session fixtures: the fake AWS service and a real server with sqlml installed.

Every server-facing test runs once per server kind (tests.servers.KINDS): MariaDB
10.11 always ("mariadb"), MariaDB 11.8 LTS ("mariadb118") and Oracle MySQL 9.7
("mysql") when they can be fetched (else that leg is reported as not run, with the
reason). SQLML_TEST_SERVERS=mariadb118 (or any comma list of kinds) narrows the run. Nothing in the
database path is mocked: tests talk to a private mysqld through PyMySQL, and the
server's sqlml.so talks to the fake over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path

import pymysql
import pytest

from sqlml import config, installer
from tests.doubles.fakeaws import FakeAWS
from tests.servers import FLAVORS, KINDS as ALL_KINDS, ServerUnavailable, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("SQLML_TEST_DIR", ROOT / ".run" / "test"))
KINDS = [k.strip() for k in os.environ.get("SQLML_TEST_SERVERS", ",".join(ALL_KINDS)).split(",") if k.strip()]
if set(KINDS) - set(ALL_KINDS):
    raise pytest.UsageError(f"SQLML_TEST_SERVERS names unknown kinds {sorted(set(KINDS) - set(ALL_KINDS))}; "
                            f"the kinds are {', '.join(ALL_KINDS)}")
# The server never sees real credentials or the instance metadata service.
SERVER_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}
DATABASE = "sqlml_test"


# Tests that need a real server: through these fixtures, or by starting one themselves
# (make up / make demo). Every other test is pure Python: `pytest -m "not server"`.
SERVER_FIXTURES = frozenset({"db", "fresh_server", "docker_engine"})
SERVER_MODULES = frozenset({"test_demo", "test_up"})


def pytest_collection_modifyitems(config, items):
    """Marks each test that needs a real server `server`. A test marked server("mysql")
    tests a feature only that server family has (the pre-parse rewrite,
    activate_all_roles_on_login): it is not collected for the other family's legs at
    all, rather than reported as skipped there. The marker names a flavor ("mariadb"
    covers both MariaDB legs) or a kind."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("server")
        kind = item.callspec.params.get("db") if hasattr(item, "callspec") else None
        wanted = marker and marker.args and kind and kind not in marker.args and FLAVORS.get(kind) not in marker.args
        (drop if wanted else keep).append(item)
        if SERVER_FIXTURES.intersection(item.fixturenames) or item.module.__name__.rpartition(".")[2] in SERVER_MODULES:
            item.add_marker(pytest.mark.server)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session")
def fake_aws():
    with FakeAWS() as fake:
        yield fake


class Db:
    """A server with sqlml installed, and helpers to query it."""

    def __init__(self, server, fake):
        self.server = server
        self.fake = fake
        self.kind = server.kind
        self.flavor = server.flavor
        self.cnf_path = Path(server.plugin_dir) / installer.CNF
        self.base_settings = {
            "comprehend_endpoint_url": fake.url,
            "sagemaker_endpoint_url": fake.url,
            "timeout_s": "10",
            "max_attempts": "3",
        }

    def connect(self, **kw) -> pymysql.connections.Connection:
        kw.setdefault("database", DATABASE)
        return self.server.connect(**kw)

    def query(self, sql: str, args=None, conn=None) -> list[tuple]:
        own = conn is None
        conn = conn or self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return [tuple(_text(v) for v in row) for row in cur.fetchall()]
        finally:
            if own:
                conn.close()

    def scalar(self, sql: str, args=None, conn=None):
        rows = self.query(sql, args, conn)
        assert len(rows) == 1 and len(rows[0]) == 1, rows
        return rows[0][0]

    def status(self) -> dict:
        return json.loads(self.scalar("SELECT sqlml_status()"))

    def write_settings(self, **overrides) -> None:
        values = {**self.base_settings, **{k: str(v) for k, v in overrides.items()}}
        installer.write_atomically(str(self.cnf_path), installer.cnf_text(values, installer_python()).encode())
        # The engine re-reads the file at most once a second, at statement start.
        # The servers run with sqlml_rewrite OFF (see the db fixture; test_rewrite switches it
        # on only for its own statements).
        expected = dataclasses.asdict(
            config.parse({"region": SERVER_ENV["AWS_REGION"], "rewrite": "off", **values}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.status()["settings"] == expected:
                return
            time.sleep(0.2)
        raise AssertionError(f"engine did not pick up {overrides}: {self.status()['settings']}")

    def uninstall_plugin(self, name: str) -> None:
        """UNINSTALL PLUGIN and wait until it is gone. A MySQL session keeps the audit
        plugins it used until it disconnects: idle sessions left by earlier tests are
        closed so the plugin can go (as a DBA would have to)."""
        self.query(f"UNINSTALL PLUGIN {name}")
        self.wait_plugin_gone(name)

    def wait_plugin_gone(self, name: str) -> None:
        deadline = time.monotonic() + 30
        killed = False
        while self.query(f"SELECT 1 FROM information_schema.PLUGINS WHERE PLUGIN_NAME = '{name}'"):
            if time.monotonic() > deadline:
                raise AssertionError(f"plugin {name} still loaded 30 s after UNINSTALL PLUGIN")
            if not killed and time.monotonic() > deadline - 27:
                with self.connect() as conn, conn.cursor() as cur:
                    cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
                                "AND COMMAND = 'Sleep'")
                    for (pid,) in cur.fetchall():
                        with contextlib.suppress(pymysql.MySQLError):
                            cur.execute(f"KILL {int(pid)}")
                killed = True
            time.sleep(0.05)

    def install_plugin(self, name: str) -> None:
        self.query(f"INSTALL PLUGIN {name} SONAME 'sqlml.so'")

    @contextlib.contextmanager
    def settings(self, **overrides):
        self.write_settings(**overrides)
        try:
            yield
        finally:
            self.write_settings()


def _text(value):
    """Binary-charset strings (a UDF's default) as text, for comparisons."""
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def installer_python() -> str:
    import sys

    return sys.executable


@pytest.fixture(scope="session", params=KINDS)
def db(request, fake_aws):
    kind = request.param
    base = RUN_DIR / kind
    # The server loads the functions in mysql.func at start, and a loaded sqlml.so stays
    # mapped (-z nodelete): put this build in place before the server starts.
    (base / "plugins").mkdir(parents=True, exist_ok=True)
    installer.copy_library(str(base / "plugins"))
    try:
        # The engine's own tests see the per-row path; MySQL's pre-parse rewrite (which
        # would batch their statements) is switched on by tests/test_rewrite.py itself.
        server = start_server(kind, base, free_port(), base / "plugins", env=SERVER_ENV,
                              extra_args=["--loose-sqlml-rewrite=OFF"])
    except ServerUnavailable as exc:
        pytest.skip(f"the {kind} leg was not run: {exc}")
    try:
        d = Db(server, fake_aws)
        with server.connect(database="mysql") as conn:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
                cur.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
                # numbers(n): 1..10000 on both servers (MySQL has no SEQUENCE engine).
                cur.execute(f"CREATE TABLE {DATABASE}.numbers (n INT PRIMARY KEY)")
                for start in range(1, 10001, 1000):
                    cur.execute(f"INSERT INTO {DATABASE}.numbers VALUES "
                                + ",".join(f"({i})" for i in range(start, start + 1000)))
            installer.install(conn, d.base_settings, log=lambda *_: None)
        yield d
    finally:
        server.stop()


@pytest.fixture
def fake(db):
    """The fake AWS service, reset before each test (and sqlml's result cache emptied)."""
    db.fake.reset()
    db.scalar("SELECT sqlml_cache_clear()")
    yield db.fake
    db.fake.reset()


@pytest.fixture
def reset_variables(db):
    """Every sqlml system variable back to its default after the test (sqlml_rewrite OFF,
    as the suite runs it)."""
    yield
    with db.connect() as conn, conn.cursor() as cur:
        for name in config.SYSTEM_VARIABLES:
            cur.execute(f"SET GLOBAL {name} = {'OFF' if name == 'sqlml_rewrite' else 'DEFAULT'}")
