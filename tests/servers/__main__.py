"""Command line for the Makefile and the demo.

    python -m tests.servers up --kind mariadb|mysql --dir DIR --port N --plugin-dir DIR
                               [--env K=V ...] [--extra-arg=--opt=v ...] [--log-bin] [--fresh]
        start a server that keeps running after this command exits; print one JSON
        line describing it (if one already runs in DIR, just describe that one)
    python -m tests.servers down --dir DIR       stop the server started in DIR
    python -m tests.servers status --dir DIR     print its JSON line, exit 1 if not running
    python -m tests.servers fetch mysql|mariadb118  fetch/unpack that server, print its root

Exit status: 0 ok, 1 the server failed (message on stderr), 2 the server
software is unavailable on this machine (reason on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import KINDS, Server, ServerStartError, ServerUnavailable, mariadb118_root, mysql_root, start_server, stop_dir


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected K=V, got {text!r}")
    return key, value


def _running(base_dir: Path) -> Server | None:
    if not (base_dir / "server.json").is_file():
        return None
    try:
        server = Server.from_dir(base_dir)
    except ServerStartError:
        return None
    return server if server.is_alive() else None


def cmd_up(a) -> int:
    base_dir = Path(a.dir).resolve()
    server = _running(base_dir)
    if server is not None:
        if server.kind != a.kind or (a.port and server.port != a.port):
            print(f"a {server.kind} server on port {server.port} already runs in {base_dir}; "
                  f"run: python -m tests.servers down --dir {a.dir}", file=sys.stderr)
            return 1
        print(f"already running in {base_dir}", file=sys.stderr)
    else:
        # stop_at_exit=False: the whole point of `up` is to outlive this process.
        server = start_server(a.kind, base_dir, a.port, a.plugin_dir, env=dict(a.env),
                              extra_args=a.extra_arg, log_bin=a.log_bin, fresh=a.fresh,
                              timeout=a.timeout, stop_at_exit=False)
    print(json.dumps(server.describe()), flush=True)
    return 0


def cmd_down(a) -> int:
    was_running = stop_dir(a.dir)
    print(f"stopped the server in {a.dir}" if was_running else f"no server running in {a.dir}",
          file=sys.stderr)
    return 0


def cmd_status(a) -> int:
    server = _running(Path(a.dir).resolve())
    if server is None:
        print(f"no server running in {a.dir}", file=sys.stderr)
        return 1
    print(json.dumps(server.describe()))
    return 0


FETCHERS = {"mysql": mysql_root, "mariadb118": mariadb118_root}


def cmd_fetch(a) -> int:
    print(FETCHERS[a.kind](log=lambda msg: print(msg, file=sys.stderr, flush=True)))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.servers", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start a detached private server")
    up.add_argument("--kind", choices=KINDS, required=True)
    up.add_argument("--dir", required=True, help="base directory (datadir, socket, logs)")
    up.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    up.add_argument("--plugin-dir", required=True, help="directory holding sqlml.so")
    up.add_argument("--env", type=_env_pair, action="append", default=[], metavar="K=V",
                    help="extra environment variable for the server (repeatable)")
    up.add_argument("--extra-arg", action="append", default=[], metavar="--OPT=V",
                    help="extra server option; write it as --extra-arg=--opt=v (repeatable)")
    up.add_argument("--log-bin", action="store_true", help="enable the binary log")
    up.add_argument("--fresh", action="store_true", help="wipe and re-initialise the datadir")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for readiness")
    up.set_defaults(func=cmd_up)

    down = sub.add_parser("down", help="stop the server started in DIR")
    down.add_argument("--dir", required=True)
    down.set_defaults(func=cmd_down)

    status = sub.add_parser("status", help="describe the server running in DIR")
    status.add_argument("--dir", required=True)
    status.set_defaults(func=cmd_status)

    fetch = sub.add_parser("fetch", help="fetch and unpack MySQL 9.7 (sid) or MariaDB 11.8 (trixie)")
    fetch.add_argument("kind", choices=sorted(FETCHERS))
    fetch.set_defaults(func=cmd_fetch)
    fetch_mysql = sub.add_parser("fetch-mysql", help="the same as: fetch mysql")
    fetch_mysql.set_defaults(func=cmd_fetch, kind="mysql")

    a = p.parse_args(argv)
    try:
        return a.func(a)
    except ServerUnavailable as e:
        print(f"unavailable: {e.reason}", file=sys.stderr)
        return 2
    except ServerStartError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
