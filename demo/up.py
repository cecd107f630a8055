"""`make up` / `make down`: a private server with sqlml and `sqlml serve`, left running.

    python -m demo.up up --server mariadb --port 3307 --dir .run/up-mariadb
    python -m demo.up down --dir .run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo.stack import start_stack, stop_stack
from tests.servers import KINDS


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="demo.up")
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--server", choices=KINDS, default="mariadb")
    up.add_argument("--port", type=int, default=3307)
    up.add_argument("--dir", type=Path, required=True)
    down = sub.add_parser("down")
    down.add_argument("--dir", type=Path, required=True)
    a = p.parse_args(argv)
    if a.cmd == "up":
        if (a.dir / "stack.json").exists():
            stop_stack(a.dir)  # a stale stack from an earlier `make up`
        stack = start_stack(a.server, a.dir.resolve(), a.port, stop_at_exit=False)
        print(f"{stack.server.kind} {stack.server.version} with sqlml on 127.0.0.1:{a.port} (user root, no password)")
        print(f"local inference service (sqlml serve) on {stack.service_url}")
        print(f"try: mariadb -h127.0.0.1 -P{a.port} -uroot -e \"SELECT sqlml_version()\"")
        print("stop with: make down")
        return 0
    stopped = [d for d in sorted(a.dir.glob("*")) if d.is_dir() and stop_stack(d)]
    print("stopped: " + (", ".join(d.name for d in stopped) if stopped else "nothing was running"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
