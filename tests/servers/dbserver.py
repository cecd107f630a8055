"""Private MariaDB / MySQL server instances for tests, the demo and `make up`.

Each instance lives entirely in one base directory:

    base_dir/data/        datadir (initialised once, reused across starts)
    base_dir/mysqld.sock  unix socket (a short /tmp path if base_dir is too long)
    base_dir/mysqld.pid   pid file written by the server
    base_dir/error.log    the server's error log
    base_dir/console.log  anything the server prints on stdout/stderr
    base_dir/server.json  how it was started (read by `down` and `Server.from_dir`)
    base_dir/initialised  marker: datadir initialised and accounts set up

Servers run with --no-defaults so no my.cnf on the machine can change them, bind
127.0.0.1 only, and are started in their own session so that a Ctrl-C in the
test runner (or the exit of the `up` CLI) does not reach them: they are always
stopped explicitly, by SQL SHUTDOWN, then SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pymysql

from . import debian_unpacked, mariadb_pkg
from .errors import ServerStartError

# kind -> flavor. A kind is one leg (a server version and where its binaries come from);
# the flavor is the server family whose SQL, plugin ABI and client it has.
#   mariadb     MariaDB 10.11 from the system (bookworm)
#   mariadb118  MariaDB 11.8 LTS from Debian trixie, unpacked (debian_unpacked)
#   mysql       Oracle MySQL 9.7 from Debian sid, unpacked (debian_unpacked)
FLAVORS = {"mariadb": "mariadb", "mariadb118": "mariadb", "mysql": "mysql"}
KINDS = tuple(FLAVORS)
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
# sun_path is 108 bytes; pytest tmp dirs can exceed it, so fall back to /tmp.
MAX_SOCKET_PATH = 100

# Servers started by this process with stop_at_exit=True (the default): stopped
# by an atexit hook if the caller forgot, so a failing test run leaves nothing behind.
_owned: list["Server"] = []


@dataclasses.dataclass(eq=False)
class Server:
    """A running (or stopped) private server. Paths are pathlib.Path objects."""

    kind: str
    version: str
    port: int
    socket: Path
    base_dir: Path
    datadir: Path
    plugin_dir: Path
    error_log: Path
    pid: int
    host: str = "127.0.0.1"
    user: str = "root"
    # How it was started, so restart() can repeat it.
    env: dict = dataclasses.field(default_factory=dict, repr=False)
    extra_args: tuple = dataclasses.field(default=(), repr=False)
    log_bin: bool = dataclasses.field(default=False, repr=False)
    _proc: subprocess.Popen | None = dataclasses.field(default=None, repr=False)

    @property
    def flavor(self) -> str:
        """'mariadb' or 'mysql': the family, whatever the version (see FLAVORS)."""
        return FLAVORS[self.kind]

    # ------------------------------------------------------------------ client

    def connect(self, **kw) -> pymysql.connections.Connection:
        """A pymysql connection over TCP as root (no password), autocommit on."""
        args = dict(host=self.host, port=self.port, user=self.user, password="",
                    charset="utf8mb4", autocommit=True, connect_timeout=10)
        args.update(kw)
        return pymysql.connect(**args)

    def client_argv(self) -> list[str]:
        """The server's own command-line client, as root over the unix socket."""
        if self.kind == "mariadb":
            client = shutil.which("mariadb") or "/usr/bin/mariadb"
            return [client, "--no-defaults", "-uroot", f"--socket={self.socket}"]
        root = debian_unpacked.mysql_root(fetch=False) if self.kind == "mysql" \
            else debian_unpacked.mariadb118_root(fetch=False)
        name, share = ("mysql", "mysql") if self.kind == "mysql" else ("mariadb", "mariadb")
        return [*debian_unpacked.loader_command(root), str(root / "usr/bin" / name), "--no-defaults", "-uroot",
                f"--socket={self.socket}", f"--character-sets-dir={root / 'usr/share' / share / 'charsets'}"]

    # ------------------------------------------------------------------ state

    def is_alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None  # also reaps it once it has exited
        return _pid_runs_datadir(self.pid, self.datadir)

    def error_log_tail(self, n: int = 40) -> str:
        return _tail(self.error_log, n)

    def describe(self) -> dict:
        """JSON-friendly description (what the `up` CLI prints)."""
        return {
            "kind": self.kind, "version": self.version, "host": self.host, "port": self.port,
            "socket": str(self.socket), "user": self.user, "base_dir": str(self.base_dir),
            "datadir": str(self.datadir), "plugin_dir": str(self.plugin_dir),
            "error_log": str(self.error_log), "pid": self.pid,
        }

    # ------------------------------------------------------------------ lifecycle

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Clean shutdown; SIGKILL if the server has not exited after `timeout` s."""
        if self in _owned:
            _owned.remove(self)
        if not self.is_alive():
            return
        try:
            conn = self.connect(connect_timeout=5)
            try:
                conn.cursor().execute("SHUTDOWN")
            finally:
                try:
                    conn.close()
                except Exception:
                    pass
        except Exception:
            # Root may have been locked out by a test, or the server is wedged:
            # SIGTERM is an equally clean shutdown for both servers.
            _signal(self.pid, signal.SIGTERM)
        if not self._wait_exit(timeout):
            _signal(self.pid, signal.SIGKILL)
            if not self._wait_exit(10):
                raise ServerStartError(f"{self.kind} pid {self.pid} survived SIGKILL")
            # A killed server leaves its pid file; the next start must not trust it.
            _unlink(self.base_dir / "mysqld.pid")

    def restart(self, extra_args=None, env=None, log_bin=None, timeout: float = READY_TIMEOUT) -> "Server":
        """Stop and start again with the same settings; None keeps the previous value.

        Updates this object in place (pid, version) and returns it.
        """
        was_owned = self in _owned
        self.stop()
        new = start_server(
            self.kind, self.base_dir, self.port, self.plugin_dir,
            env=self.env if env is None else env,
            extra_args=self.extra_args if extra_args is None else extra_args,
            log_bin=self.log_bin if log_bin is None else log_bin,
            timeout=timeout, stop_at_exit=False,
        )
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(new, f.name))
        if was_owned and self not in _owned:
            _owned.append(self)
        return self

    def _wait_exit(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                return True
            time.sleep(0.05)
        return not self.is_alive()

    @classmethod
    def from_dir(cls, base_dir) -> "Server":
        """Rebuild a Server from base_dir/server.json (e.g. one started by `up`)."""
        base_dir = Path(base_dir).resolve()
        try:
            info = json.loads((base_dir / "server.json").read_text())
        except (OSError, ValueError) as e:
            raise ServerStartError(f"no server description in {base_dir}: {e}") from None
        pid = _read_pid(base_dir / "mysqld.pid") or info["pid"]
        return cls(
            kind=info["kind"], version=info["version"], port=info["port"], socket=Path(info["socket"]),
            base_dir=base_dir, datadir=Path(info["datadir"]), plugin_dir=Path(info["plugin_dir"]),
            error_log=Path(info["error_log"]), pid=pid, env=info.get("env", {}),
            extra_args=tuple(info.get("extra_args", ())), log_bin=info.get("log_bin", False),
        )


# ====================================================================== start


def start_server(kind: str, base_dir, port: int, plugin_dir, env: dict | None = None,
                 extra_args=(), log_bin: bool = False, fresh: bool = False,
                 timeout: float = READY_TIMEOUT, stop_at_exit: bool = True) -> Server:
    """Start a private server of `kind` (one of KINDS) in base_dir.

    The datadir is initialised on first use and reused afterwards (fresh=True
    wipes it). `env` is merged into the server's environment (the sqlml library
    reads SQLML_* from there). `extra_args` are appended last, so they override.
    With log_bin=True the binary log is on (pass --binlog-format=... in extra_args).
    With stop_at_exit=True the server is stopped when this Python process exits.

    Raises ServerUnavailable if the server software cannot be had here, and
    ServerStartError (with the error-log tail) if it fails to start.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    base_dir = Path(base_dir).resolve()
    plugin_dir = Path(plugin_dir).resolve()
    base_dir.mkdir(parents=True, exist_ok=True)
    plugin_dir.mkdir(parents=True, exist_ok=True)
    env = dict(env or {})
    extra_args = tuple(str(a) for a in extra_args)
    datadir = base_dir / "data"
    paths = _Paths(base_dir)

    _stop_stale(paths, datadir)
    if fresh:
        shutil.rmtree(datadir, ignore_errors=True)
        _unlink(paths.marker)
    _check_port_free(port)

    software = _Software(kind)
    first_start = not _initialised(paths, kind, datadir)
    if first_start:
        shutil.rmtree(datadir, ignore_errors=True)  # a half-initialised datadir is useless
        _init_datadir(software, paths, datadir)

    argv = software.server_cmd + _server_args(software, paths, datadir, port, plugin_dir, log_bin) + list(extra_args)
    proc = _spawn(argv, env, paths)
    server = Server(kind=kind, version="", port=port, socket=paths.socket, base_dir=base_dir,
                    datadir=datadir, plugin_dir=plugin_dir, error_log=paths.error_log, pid=proc.pid,
                    env=env, extra_args=extra_args, log_bin=log_bin, _proc=proc)
    try:
        _wait_ready(server, proc, timeout)
        if first_start:
            _setup_accounts(server)
            paths.marker.write_text(json.dumps({"kind": kind}) + "\n")
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            server.version = cur.fetchone()[0]
    except BaseException as e:
        tail = server.error_log_tail(30)
        _kill_hard(proc)  # never leave a half-started server behind
        if isinstance(e, ServerStartError) or not isinstance(e, Exception):
            raise
        raise ServerStartError(f"{kind} on port {port} started but is unusable: {e}\n"
                               f"--- {paths.error_log} (tail) ---\n{tail}") from e
    server.pid = _read_pid(paths.pid_file) or proc.pid
    paths.state.write_text(json.dumps(
        dict(server.describe(), env=env, extra_args=list(extra_args), log_bin=log_bin), indent=2) + "\n")
    if stop_at_exit:
        _owned.append(server)
    return server


class _Paths:
    def __init__(self, base_dir: Path):
        self.base_dir = base_dir
        self.pid_file = base_dir / "mysqld.pid"
        self.error_log = base_dir / "error.log"
        self.console = base_dir / "console.log"
        self.state = base_dir / "server.json"
        self.marker = base_dir / "initialised"
        sock = base_dir / "mysqld.sock"
        if len(str(sock)) > MAX_SOCKET_PATH:
            digest = hashlib.sha1(str(base_dir).encode()).hexdigest()[:12]
            sock = Path(tempfile.gettempdir()) / f"sqlml-{digest}.sock"
        self.socket = sock


def _initialised(paths: _Paths, kind: str, datadir: Path) -> bool:
    if not paths.marker.is_file() or not (datadir / "mysql").is_dir():
        return False
    try:
        done_kind = json.loads(paths.marker.read_text())["kind"]
    except (OSError, ValueError, KeyError):
        return False
    if done_kind != kind:
        raise ServerStartError(f"{datadir} holds a {done_kind} datadir, not {kind}: "
                               "use another base_dir or fresh=True")
    return True


def ensure_software(kind: str) -> None:
    """Make sure `kind`'s binaries are here (installing or fetching them);
    raises ServerUnavailable with the reason when they cannot be had."""
    _Software(kind)


class _Software:
    """Where a kind's binaries are, and the options that depend on that."""

    def __init__(self, kind: str):
        self.kind = kind
        self.install_db = None
        if kind == "mariadb":
            tools = mariadb_pkg.mariadb_binaries()
            self.server_cmd = [tools["mariadbd"]]
            self.install_db = tools["install_db"]
            self.path_args = []
        elif kind == "mariadb118":
            root = debian_unpacked.mariadb118_root()
            self.server_cmd = debian_unpacked.loader_command(root) + [str(root / "usr/sbin/mariadbd")]
            self.share = root / "usr/share/mariadb"
            # The compiled-in defaults point at /usr, where bookworm's 10.11 lives.
            self.path_args = [f"--basedir={root / 'usr'}", f"--lc-messages-dir={self.share}",
                              f"--character-sets-dir={self.share / 'charsets'}/"]
        else:
            root = debian_unpacked.mysql_root()
            self.server_cmd = debian_unpacked.loader_command(root) + [str(root / "usr/sbin/mysqld")]
            share = root / "usr/share/mysql"
            # mysqld's compiled-in defaults point at /usr, not at our private root.
            self.path_args = [f"--basedir={root / 'usr'}", f"--lc-messages-dir={share}",
                              f"--character-sets-dir={share / 'charsets'}/"]


# What trixie's mariadb-install-db pipes into `mariadbd --bootstrap`, in its order
# (the test database left out, as --skip-test-db does).
MARIADB_BOOTSTRAP_SQL = ("mariadb_system_tables.sql", "mariadb_performance_tables.sql",
                         "mariadb_system_tables_data.sql", "fill_help_tables.sql",
                         "maria_add_gis_sp_bootstrap.sql", "mariadb_sys_schema.sql")


def _bootstrap_sql(share: Path) -> str:
    """mariadb-install-db's script, for an unpacked MariaDB. The script itself cannot
    be used: it runs mariadbd and my_print_defaults directly, and those need the
    unpacked suite's loader."""
    head = "create database if not exists mysql;\nuse mysql;\nSET @auth_root_socket=NULL;\n"
    return head + "".join((share / name).read_text() for name in MARIADB_BOOTSTRAP_SQL)


def _init_datadir(software: _Software, paths: _Paths, datadir: Path) -> None:
    t0 = time.monotonic()
    stdin_text = None
    if software.kind == "mariadb118":
        datadir.mkdir(parents=True, exist_ok=True)
        argv = software.server_cmd + ["--no-defaults", "--bootstrap", "--user=root", f"--datadir={datadir}",
                                      f"--log-error={paths.error_log}", "--log-warnings=0",
                                      "--enforce-storage-engine=", "--max-allowed-packet=8M",
                                      "--net-buffer-length=16K", *software.path_args]
        stdin_text = _bootstrap_sql(software.share)
    elif software.kind == "mariadb":
        argv = [software.install_db, "--no-defaults", "--user=root", f"--datadir={datadir}",
                "--auth-root-authentication-method=normal", "--skip-test-db"]
    else:
        # --secure-file-priv is needed even here: the compiled-in dir does not exist.
        argv = software.server_cmd + ["--no-defaults", "--initialize-insecure", "--user=root",
                                      f"--datadir={datadir}", f"--log-error={paths.error_log}",
                                      f"--secure-file-priv={paths.base_dir}", *software.path_args]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300, input=stdin_text,
                           stdin=subprocess.DEVNULL if stdin_text is None else None)
    except subprocess.TimeoutExpired:
        raise ServerStartError(f"initialising the {software.kind} datadir timed out") from None
    if p.returncode != 0:
        out = "\n".join((p.stdout + p.stderr).strip().splitlines()[-20:])
        raise ServerStartError(f"initialising the {software.kind} datadir failed (exit {p.returncode}) "
                               f"after {time.monotonic() - t0:.1f} s:\n{out}\n"
                               f"--- {paths.error_log} (tail) ---\n{_tail(paths.error_log, 20)}")


def _server_args(software: _Software, paths: _Paths, datadir: Path, port: int, plugin_dir: Path,
                 log_bin: bool) -> list[str]:
    args = ["--no-defaults", "--user=root", f"--datadir={datadir}", f"--socket={paths.socket}",
            f"--port={port}", "--bind-address=127.0.0.1", f"--pid-file={paths.pid_file}",
            f"--log-error={paths.error_log}", f"--plugin-dir={plugin_dir}",
            # Tests write/read files (SELECT ... INTO OUTFILE, LOAD DATA) under base_dir only.
            f"--secure-file-priv={paths.base_dir}", *software.path_args]
    if software.kind == "mysql":
        args += [
            "--mysqlx=OFF",
            # Defaults take ~450-540 MB RSS; these bring it to ~350 MB while leaving
            # performance_schema on (SHOW STATUS and global_status read from it).
            # Most of the rest is performance_schema's per-thread tables and
            # InnoDB's fixed buffers (~220 MB even with performance_schema off).
            "--innodb-buffer-pool-size=64M",
            "--innodb-redo-log-capacity=64M",
            "--innodb-log-buffer-size=8M",
            "--temptable-max-ram=64M",
            "--key-buffer-size=1M",
            "--max-digest-length=256",
            "--performance-schema-max-digest-length=256",
            "--performance-schema-max-sql-text-length=256",
            "--performance-schema-digests-size=1000",
            "--performance-schema-events-statements-history-long-size=1000",
            "--performance-schema-events-stages-history-long-size=1000",
            "--performance-schema-events-waits-history-long-size=1000",
            "--performance-schema-events-transactions-history-long-size=1000",
            "--performance-schema-accounts-size=100",
            "--performance-schema-hosts-size=100",
            "--performance-schema-users-size=100",
        ]
    if log_bin:
        args += ["--log-bin=binlog", "--server-id=1"]
    else:
        args += ["--skip-log-bin"]
    return args


def _spawn(argv: list[str], env: dict, paths: _Paths) -> subprocess.Popen:
    full_env = dict(os.environ)
    full_env.update({k: str(v) for k, v in env.items()})
    with open(paths.console, "ab") as console:
        console.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        console.flush()
        return subprocess.Popen(argv, env=full_env, stdin=subprocess.DEVNULL, stdout=console,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                cwd=paths.base_dir)


def _wait_ready(server: Server, proc: subprocess.Popen, timeout: float) -> None:
    """Ready = a root connection over the unix socket succeeds (accounts for TCP
    may not exist yet on the first start)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{server.kind} exited with status {proc.returncode} during startup "
                f"(port {server.port}):\n--- {server.error_log} (tail) ---\n{server.error_log_tail(30)}")
        if server.socket.exists():
            try:
                pymysql.connect(unix_socket=str(server.socket), user="root", password="",
                                connect_timeout=2).close()
                return
            except pymysql.err.OperationalError as e:
                last = e
        time.sleep(0.05)
    _kill_hard(proc)
    raise ServerStartError(f"{server.kind} not ready after {timeout:.0f} s (last error: {last}):\n"
                           f"--- {server.error_log} (tail) ---\n{server.error_log_tail(30)}")


def _setup_accounts(server: Server) -> None:
    """Once per datadir: root without password over TCP from 127.0.0.1, no anonymous users.

    MariaDB's install-db creates ''@localhost and ''@<hostname>, which would shadow
    test users created at '%'. A TCP client from 127.0.0.1 normally maps to
    'localhost' on both servers (so CURRENT_USER() is root@localhost, as over the
    socket). An explicit root@127.0.0.1 is created only when that mapping fails
    (name resolution differs), because on MySQL such an account would win over
    root@localhost and change CURRENT_USER() for every test.
    """
    conn = pymysql.connect(unix_socket=str(server.socket), user="root", password="", autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT user, host FROM mysql.user WHERE user = ''")
            for user, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (user, host))
            try:
                server.connect(connect_timeout=5).close()
            except pymysql.err.OperationalError as e:
                if e.args[0] not in (1045, 1130):  # access denied / host not allowed
                    raise
                cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''")
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
                cur.execute("GRANT PROXY ON ''@'' TO 'root'@'127.0.0.1' WITH GRANT OPTION")
    finally:
        conn.close()


# ====================================================================== stop / processes


def stop_dir(base_dir, timeout: float = STOP_TIMEOUT) -> bool:
    """Stop the server running in base_dir, if any. Returns True if one was running."""
    base_dir = Path(base_dir).resolve()
    if (base_dir / "server.json").is_file():
        server = Server.from_dir(base_dir)
        alive = server.is_alive()
        server.stop(timeout)
        return alive
    paths = _Paths(base_dir)
    return _stop_stale(paths, base_dir / "data")


def _stop_stale(paths: _Paths, datadir: Path) -> bool:
    """Stop a server left running on this datadir (e.g. by a killed test run):
    it would hold the InnoDB lock and make the new server fail obscurely."""
    pid = _read_pid(paths.pid_file)
    if not pid or not _pid_runs_datadir(pid, datadir):
        return False
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _pid_runs_datadir(pid, datadir):
        time.sleep(0.05)
    if _pid_runs_datadir(pid, datadir):
        _signal(pid, signal.SIGKILL)
        time.sleep(0.2)
    _unlink(paths.pid_file)
    return True


def _pid_runs_datadir(pid: int, datadir: Path) -> bool:
    """True if pid is alive, not a zombie, and is a server on this datadir
    (guards against pid reuse after a crash)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
        return False
    return f"--datadir={datadir}".encode() in cmdline


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_hard(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ServerStartError(f"port {port} on 127.0.0.1 is already in use") from None
            raise


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1 (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return f"(no error log at {path})"
    return "\n".join(lines[-n:])


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


@atexit.register
def _stop_owned() -> None:
    for server in list(_owned):
        try:
            server.stop(timeout=20)
        except Exception:
            pass
