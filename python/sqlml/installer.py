"""`sqlml install` / `sqlml uninstall`: put sqlml.so where a server loads it, and run the SQL.

install copies sqlml.so into the server's plugin_dir (when that directory is on this
machine) and writes sqlml.cnf beside it, naming this Python environment (the one that
holds sqlml and boto3) and any settings given; then it runs sql/install.sql and checks
that sqlml_version() answers. It is idempotent: run it again to upgrade or reconfigure.
"""

from __future__ import annotations

import configparser
import io
import os
import sys
import tempfile
from importlib import resources

import pymysql

from . import config

LIBRARY = "sqlml.so"
PLUGINS = ("sqlml", "aws", "aurora_ml")  # the plugin part of the library (install.sql)
CNF = "sqlml.cnf"


def package_file(*parts: str) -> str:
    return str(resources.files("sqlml").joinpath(*parts))


def library_file() -> str:
    path = package_file("lib", LIBRARY)
    if not os.path.exists(path):
        raise SystemExit(f"sqlml: {path} is missing: install sqlml with `pip install .` so the library is built")
    return path


def sql_statements(name: str) -> list[str]:
    """The statements of sql/<name>, split at ';' line ends, comments dropped."""
    with open(package_file("sql", name), encoding="utf-8") as f:
        text = "\n".join(line for line in f if not line.lstrip().startswith("--"))
    return [s.strip() for s in text.split(";\n") if s.strip().rstrip(";")]


def connect(host: str, port: int, socket: str | None, user: str, password: str | None):
    kwargs = dict(user=user, password=password or "", autocommit=True, charset="utf8mb4", database="mysql")
    if socket:
        kwargs["unix_socket"] = socket
    else:
        kwargs.update(host=host, port=port)
    return pymysql.connect(**kwargs)


def write_atomically(path: str, data: bytes) -> None:
    """Replaces path in one rename: a server that has the old library mapped keeps it."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".sqlml-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def cnf_text(settings: dict[str, str], python: str) -> str:
    config.parse(settings)  # refuse bad values before anything is written
    cp = configparser.ConfigParser(interpolation=None)
    cp["sqlml"] = {"python": python, **settings}
    out = io.StringIO()
    out.write("# Written by `sqlml install`. The server reads it when sqlml first loads;\n"
              "# settings other than `python` are re-read within a second of a change.\n")
    cp.write(out)
    return out.getvalue()


def install(conn, settings: dict[str, str], plugin_dir: str | None = None, python: str | None = None,
            log=print) -> str:
    with conn.cursor() as cur:
        cur.execute("SELECT @@plugin_dir, VERSION()")
        server_plugin_dir, version = cur.fetchone()
    target = plugin_dir or server_plugin_dir
    if not os.path.isdir(target):
        raise SystemExit(f"sqlml: the server's plugin_dir {target} is not on this machine: copy {library_file()} and "
                         f"a sqlml.cnf there yourself (see docs/install.md), then run install.sql")
    with open(library_file(), "rb") as f:
        write_atomically(os.path.join(target, LIBRARY), f.read())
    cnf_path = os.path.join(target, CNF)
    write_atomically(cnf_path, cnf_text(settings, python or sys.executable).encode())
    log(f"copied {LIBRARY} and wrote {CNF} in {target} (server {version})")
    with conn.cursor() as cur:
        for statement in sql_statements("install.sql"):
            try:
                cur.execute(statement)
            except pymysql.MySQLError as exc:
                raise SystemExit(f"sqlml: install.sql failed ({exc.args[-1]}) at: {statement[:120]}"
                                 f"{_loaded_version_note(cur)}") from None
        states = plugin_states(conn)
        waiting = [name for name in PLUGINS if states.get(name) != "ACTIVE"]
        if waiting:
            raise SystemExit(f"sqlml: the server is still unloading the plugin(s) {', '.join(waiting)} "
                             f"({', '.join(states.get(n) or 'absent' for n in waiting)}): MySQL lets an audit "
                             f"plugin go once every session that used it has ended. Close those sessions "
                             f"(or restart the server), then run install again")
        cur.execute("SELECT sqlml_version()")
        (reported,) = cur.fetchone()
    reported = reported.decode() if isinstance(reported, bytes) else reported
    log(reported)
    from . import __version__

    if f"library {__version__}" not in reported:
        log(f"note: the server still runs an older sqlml.so; restart it to load {__version__} "
            f"(a loaded library stays mapped until the server exits)")
    return reported


def _loaded_version_note(cur) -> str:
    """What sqlml_version() says, if install.sql got as far as creating it: on a server
    whose ABI sqlml refuses, that names the mismatch the plugin init failed on."""
    try:
        cur.execute("SELECT sqlml_version()")
        (text,) = cur.fetchone()
    except pymysql.MySQLError:
        return ""
    return "\nthe loaded library says: " + (text.decode() if isinstance(text, bytes) else text)


def plugin_states(conn) -> dict[str, str]:
    """{plugin name: PLUGIN_STATUS} of sqlml's plugins the server lists."""
    with conn.cursor() as cur:
        cur.execute("SELECT PLUGIN_NAME, PLUGIN_STATUS FROM information_schema.PLUGINS WHERE PLUGIN_NAME IN "
                    "(" + ", ".join(["%s"] * len(PLUGINS)) + ")", PLUGINS)
        return {name: status for name, status in cur.fetchall()}


def uninstall(conn, log=print) -> None:
    with conn.cursor() as cur:
        for statement in sql_statements("uninstall.sql"):
            cur.execute(statement)
    log("sqlml functions and plugins dropped (sqlml.so stays in plugin_dir: the server may still have it "
        "loaded; MySQL unloads the plugins once the sessions that used them end)")


def copy_library(target_dir: str) -> str:
    """Copies sqlml.so into target_dir (for tests and images); returns the new path."""
    dest = os.path.join(target_dir, LIBRARY)
    with open(library_file(), "rb") as f:
        write_atomically(dest, f.read())  # never rewrite a library a server has mapped
    return dest
