"""Per-row cost of crossing into the Python engine, against a pure-C UDF, in one run.

    SELECT SUM(f(n)) FROM n1m          (1,000,000 rows, summed on the server)
with f = nothing (n+0), sqlml_noop_int (C, no Python), sqlml_echo_int (into Python
and back). The crossing is echo minus noop: taking this thread's Python state and
the GIL, converting the argument and the result, calling the engine, releasing.
"""

from __future__ import annotations

import sys

from bench.common import ServerUnavailable, print_table, server_with_sqlml, thousand, timed, write_results

ROWS = 1_000_000
REPEAT = 5
SHAPES = {
    "scan (n+0)": "SELECT SUM(n + 0) FROM bench.n1m",
    "C no-op UDF": "SELECT SUM(sqlml_noop_int(n)) FROM bench.n1m",
    "Python echo UDF": "SELECT SUM(sqlml_echo_int(n)) FROM bench.n1m",
}


def make_table(cur) -> None:
    k1 = thousand(cur)
    cur.execute("CREATE TABLE IF NOT EXISTS bench.n1m (n INT PRIMARY KEY)")
    cur.execute("SELECT COUNT(*) FROM bench.n1m")
    if cur.fetchone()[0] != ROWS:
        cur.execute("DELETE FROM bench.n1m")
        cur.execute(f"INSERT INTO bench.n1m SELECT a.n * 1000 + b.n FROM {k1} a, {k1} b")


def run(kinds=("mariadb", "mariadb118", "mysql")) -> dict:
    results, rows = {}, []
    for kind in kinds:
        try:
            with server_with_sqlml(kind, {}) as server, server.connect() as conn, conn.cursor() as cur:
                make_table(cur)
                timings = {name: timed(cur, sql, REPEAT) for name, sql in SHAPES.items()}
                cur.execute("SELECT SUM(sqlml_echo_int(n)) = SUM(n) FROM bench.n1m")
                assert cur.fetchone()[0] == 1, "echo changed a value"
        except ServerUnavailable as exc:
            print(f"{kind}: not run: {exc}", file=sys.stderr)
            results[kind] = {"not_run": str(exc)}
            continue
        ns = {name: t / ROWS * 1e9 for name, t in timings.items()}
        crossing = ns["Python echo UDF"] - ns["C no-op UDF"]
        results[kind] = {"ns_per_row": {k: round(v, 1) for k, v in ns.items()},
                         "python_crossing_ns_per_row": round(crossing, 1), "rows": ROWS, "best_of": REPEAT}
        for name, v in ns.items():
            rows.append([kind, name, f"{v:.0f}", f"{v / ns['C no-op UDF']:.2f}x"])
        rows.append([kind, "crossing (echo - noop)", f"{crossing:.0f}", "target < 200"])
    print_table(f"Python crossing, SUM(f(n)) over {ROWS:,} rows, best of {REPEAT}",
                ["server", "function", "ns/row", "vs C no-op"], rows)
    write_results("crossing", {"results": results})
    return results


if __name__ == "__main__":
    run()
