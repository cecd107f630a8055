"""Shared benchmark plumbing: private servers with sqlml, timing, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import contextmanager
from pathlib import Path

from sqlml import installer
from tests.servers import ServerUnavailable, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
RUN_DIR = ROOT / ".run" / "bench"
SERVER_ENV = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
              "AWS_REGION": "us-east-1"}


@contextmanager
def server_with_sqlml(kind: str, settings: dict[str, str]):
    """A private server of `kind` with sqlml installed; raises ServerUnavailable."""
    base = RUN_DIR / kind
    (base / "plugins").mkdir(parents=True, exist_ok=True)
    installer.copy_library(str(base / "plugins"))  # before start: see tests/conftest.py
    server = start_server(kind, base, free_port(), base / "plugins", env=SERVER_ENV)
    try:
        with server.connect(database="mysql") as conn:
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE IF NOT EXISTS bench")
            installer.install(conn, settings, log=lambda *_: None)
        yield server
    finally:
        server.stop()


def thousand(cur) -> str:
    """bench.k1 (n INT) holding 0..999, the seed of the large tables (cross joins of it)."""
    cur.execute("CREATE TABLE IF NOT EXISTS bench.k1 (n INT PRIMARY KEY)")
    cur.execute("SELECT COUNT(*) FROM bench.k1")
    if cur.fetchone()[0] != 1000:
        cur.execute("DELETE FROM bench.k1")
        cur.execute("INSERT INTO bench.k1 VALUES " + ",".join(f"({i})" for i in range(1000)))
    return "bench.k1"


def timed(cur, sql: str, repeat: int) -> float:
    """Best wall time of `repeat` runs of sql, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        cur.execute(sql)
        cur.fetchall()
        best = min(best, time.perf_counter() - started)
    return best


def write_results(name: str, payload: dict) -> Path:
    """Writes bench/results/<name>.json (the payload, the machine and the time) and says so."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                             "platform": platform.platform()},
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **payload}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(x)) for x in [h] + [r[i] for r in rows]) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)))


__all__ = ["ServerUnavailable", "print_table", "server_with_sqlml", "thousand", "timed", "write_results"]
