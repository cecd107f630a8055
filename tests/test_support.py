"""What sqlml says and does about the server it runs in (sqlml.support, native/server_api.h).

sqlml_version() names the server's version and whether `make test` runs on that series
(sqlml.support.TESTED; tests/test_install.py checks every leg is listed). A version
never tested still gets every function. A server whose ABI sqlml can see is not the one
it was built for (a symbol it needs is not exported, a plugin descriptor of another size)
gets every function but sqlml_version() refused with the mismatch named, and sqlml's
plugins refuse to initialise: the server stays up. A failure here means sqlml would run
half-blind on such a server (no privilege check, errors lost), or crash it.

Each test starts its own private server of the leg's kind: the servers' own build cannot
be made to lack a symbol, so SQLML_TEST_HIDE_SYMBOLS makes sqlml's lookup treat the
named ones as absent, as it would on such a build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest

from sqlml import installer
from sqlml import support
from tests.conftest import SERVER_ENV
from tests.servers import free_port, start_server

# Per flavor: a function symbol sqlml needs (the privilege check / the current THD), and
# the plugin descriptor size it compares with its own declaration (plugin_abi.h).
NEEDED_SYMBOL = {
    # 10.11's and 11.x's signatures of the routine-level check (hidden together).
    "mariadb": ("_Z23check_routine_level_aclP3THDPKcS2_PK10Sp_handler,"
                "_Z23check_routine_level_aclP3THD11privilege_tPKcS3_PK10Sp_handler", "check_routine_level_acl"),
    "mysql": ("_Z19thd_get_current_thdv", "thd_get_current_thd"),
}
PLUGIN_SIZE_SYMBOL = {"mariadb": "builtin_maria_binlog_sizeof_struct_st_plugin",
                      "mysql": "builtin_binlog_sizeof_struct_st_plugin"}


@pytest.fixture
def private_server(db, tmp_path):
    """start(env=..., extra_args=...): a fresh server of this leg's kind, sqlml.so in its plugin dir."""
    started = []

    def start(env=None, extra_args=()):
        plugins = tmp_path / "plugins"
        plugins.mkdir(exist_ok=True)
        installer.copy_library(str(plugins))
        server = start_server(db.kind, tmp_path / "db", free_port(), plugins, env={**SERVER_ENV, **(env or {})},
                              extra_args=extra_args, fresh=True)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def scalar(conn, sql: str):
    with conn.cursor() as cur:
        cur.execute(sql)
        value = cur.fetchone()[0]
    return value.decode() if isinstance(value, bytes) else value


@pytest.mark.server("mariadb")  # MySQL has no way to report another version (MariaDB: --version=)
def test_a_server_version_never_tested_is_called_untested_and_every_function_still_runs(db, fake, private_server):
    server = private_server(extra_args=["--version=99.1.0-MariaDB-sqlml-test"])
    with server.connect(database="mysql") as conn:
        installer.install(conn, db.base_settings, log=lambda *_: None)
        version = scalar(conn, "SELECT sqlml_version()")
        assert ("server mariadb 99.1.0-MariaDB-sqlml-test, untested: "
                f"sqlml is tested on {support.tested_series_text()}") in version
        assert scalar(conn, "SELECT aws_sagemaker_invoke_endpoint_real('echo-untested', 'REAL', 1, 7)") == 7.0


@pytest.mark.parametrize("what", ["function", "plugin struct size"])
def test_a_missing_server_symbol_fails_closed_and_names_it(db, fake, private_server, what):
    symbol, name = NEEDED_SYMBOL[db.flavor] if what == "function" else (PLUGIN_SIZE_SYMBOL[db.flavor],) * 2
    server = private_server(env={"SQLML_TEST_HIDE_SYMBOLS": f"unrelated,{symbol}"})
    problem = f"no symbol {name}"
    with server.connect(database="mysql") as conn:
        with pytest.raises(SystemExit) as refused:
            installer.install(conn, db.base_settings, log=lambda *_: None)
        # The plugin's init failed (install.sql had created the functions already), and
        # the installer says why.
        assert "Plugin initialization function failed" in str(refused.value), refused.value
        assert problem in str(refused.value), refused.value
        version = scalar(conn, "SELECT sqlml_version()")
        assert f"ABI MISMATCH: {problem}; every function but sqlml_version() is refused" in version
        with pytest.raises(pymysql.err.OperationalError) as err:
            scalar(conn, "SELECT aws_sagemaker_invoke_endpoint_real('echo-abi', 'REAL', 1, 7)")
        # MariaDB cuts the init message at 80 characters: the symbol's name still fits.
        assert f"server ABI mismatch: {problem}" in err.value.args[1]
        assert fake.stats(log=False)["requests"] == 0  # nothing ran
    with server.connect() as conn:
        assert scalar(conn, "SELECT 1") == 1  # the server is still up
    assert f"refusing to initialise the sqlml plugin: {problem}" in server.error_log_tail(200)


def test_the_images_first_start_fails_on_a_server_sqlml_refuses_and_says_why(db, private_server):
    symbol, name = NEEDED_SYMBOL[db.flavor]
    server = private_server(env={"SQLML_TEST_HIDE_SYMBOLS": symbol})
    script = Path(__file__).resolve().parent.parent / "docker" / "install-sqlml.sh"

    def step(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "SQLML_VENV": str(Path(sys.executable).parent.parent)})

    files = step("files", str(server.plugin_dir))  # as the image build does
    assert files.returncode == 0, files.stderr
    result = step("sql", *server.client_argv(), "--database=mysql")  # as the first start does
    assert result.returncode != 0
    assert f"ABI MISMATCH: no symbol {name}" in result.stderr, result.stderr
