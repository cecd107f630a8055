"""`make demo`: the seed's queries on a private server with sqlml and `sqlml serve`.

Starts the stack (demo/stack.py), loads the project's demo data (reviews written for
sqlml; a deterministic taxi-like series with known anomalies, or NAB's nyc_taxi.csv
with --data), runs the seed's two example queries as Aurora users write them, shows
the counters, and stops everything it started.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from demo.data import REVIEWS, read_taxi_csv
from demo.queries import (ANOMALY_DDL, ANOMALY_SQL, BATCHED_ANOMALY_SQL, BATCHED_CUTOFF_SQL,
                          BATCHED_SENTIMENT_SQL, CUTOFF_SQL, SENTIMENT_SQL)
from demo.stack import rcf_config_for, start_stack
from sqlml.local import demo_taxi_events, demo_taxi_series
from sqlml.translate import translate
from tests.servers import KINDS, free_port

ROOT = Path(__file__).resolve().parent.parent


def show(cur, title: str, sql: str) -> list[tuple]:
    print(f"\n-- {title}\n{sql};")
    started = time.perf_counter()
    cur.execute(sql)
    rows = cur.fetchall()
    elapsed = time.perf_counter() - started
    if cur.description:
        names = [d[0] for d in cur.description]
        text = [[v.decode() if isinstance(v, bytes) else str(v) for v in r] for r in rows]
        widths = [max(len(n), *(len(r[i]) for r in text)) if text else len(n) for i, n in enumerate(names)]
        print("  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True)))
        for r in text[:25]:
            print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
        if len(text) > 25:
            print(f"... ({len(text)} rows)")
    print(f"({len(rows)} row{'s' if len(rows) != 1 else ''}, {elapsed:.2f} s)")
    return rows


def counters(cur) -> dict:
    cur.execute("SHOW GLOBAL STATUS LIKE 'Aurora_ml%'")
    return {name: int(value) for name, value in cur.fetchall()}


def print_counters(cur, title: str, before: dict | None = None) -> None:
    now = counters(cur)
    print(f"\n-- {title} (SHOW GLOBAL STATUS LIKE 'Aurora_ml%'):")
    for name, value in now.items():
        print(f"{name:<32} {value - (before or {}).get(name, 0):>10,}")


def load(cur, taxi: list[tuple[str, float]]) -> None:
    cur.execute("CREATE DATABASE IF NOT EXISTS demo CHARACTER SET utf8mb4")
    cur.execute("USE demo")
    cur.execute("DROP TABLE IF EXISTS product_reviews")
    cur.execute("CREATE TABLE product_reviews (id INT AUTO_INCREMENT PRIMARY KEY, product_id INT, review TEXT)")
    cur.executemany("INSERT INTO product_reviews (product_id, review) VALUES (%s, %s)", REVIEWS)
    cur.execute("DROP TABLE IF EXISTS nyc_taxi")
    cur.execute("CREATE TABLE nyc_taxi (ts DATETIME PRIMARY KEY, value DOUBLE)")
    for i in range(0, len(taxi), 2000):
        cur.executemany("INSERT INTO nyc_taxi VALUES (%s, %s)", taxi[i:i + 2000])
    cur.execute("DROP FUNCTION IF EXISTS anomaly_score")
    cur.execute(translate(ANOMALY_DDL))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="demo")
    p.add_argument("--server", choices=KINDS, default="mariadb")
    p.add_argument("--data", help="NAB nyc_taxi.csv to use instead of the generated series")
    p.add_argument("--dir", type=Path, help="where the server and the service live (default .run/demo-SERVER)")
    a = p.parse_args(argv)
    taxi = read_taxi_csv(a.data) if a.data else demo_taxi_series()
    config = rcf_config_for(a.data) if a.data else None
    base = (a.dir or ROOT / ".run" / f"demo-{a.server}").resolve()
    print(f"starting {a.server} with sqlml and the local inference service ...")
    stack = start_stack(a.server, base, free_port(), config=config)
    try:
        print(f"{stack.server.kind} {stack.server.version}; sqlml serve at {stack.service_url}")
        with stack.server.connect() as conn, conn.cursor() as cur:
            load(cur, taxi)
            show(cur, "the version of what is loaded", "SELECT sqlml_version()")
            print(f"\n-- Aurora DDL, translated by `sqlml translate`:\n{ANOMALY_DDL};\n=>\n{translate(ANOMALY_DDL)};")
            show(cur, "seed query 1: average sentiment per product, confident assessments only", SENTIMENT_SQL)
            print(f"\n-- seed query 2: anomalies over {len(taxi):,} taxi readings "
                  f"({'NAB nyc_taxi' if a.data else 'generated series'})")
            show(cur, "cutoff at mean + 3 standard deviations", CUTOFF_SQL)
            rows = show(cur, "readings above the cutoff", ANOMALY_SQL)
            if not a.data:
                known = {ts for ts, _ in (taxi[i] for i in demo_taxi_events())}
                found = {str(r[0]) for r in rows}
                print(f"known anomalies of the generated series found: {len(known & found)} of {len(known)}")
            print_counters(cur, "engine counters after the scalar (per-row) path")
            print("\n== the same queries on the batch path (result cache emptied first) ==")
            cur.execute("SELECT sqlml_cache_clear()")
            before = counters(cur)
            show(cur, "seed query 1, batched", BATCHED_SENTIMENT_SQL)
            show(cur, "cutoff, batched", BATCHED_CUTOFF_SQL)
            show(cur, "readings above the cutoff, batched", BATCHED_ANOMALY_SQL)
            print_counters(cur, "what the batch path cost (difference)", before)
    finally:
        stack.stop()
        print("\nstopped the server and the local inference service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
