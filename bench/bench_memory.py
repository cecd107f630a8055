"""Memory across cycles: the server's RSS over repeated batch statements and cache clears.

One MariaDB server with sqlml, tests/doubles/fakeaws on 127.0.0.1 (no latency). A table of
ROWS rows; then CYCLES times: the batch path over every row (a warm-up aggregate and
the reading function, as docs/sql.md "Batching" shows), then `SELECT sqlml_cache_clear()`.
Per cycle: the server's peak RSS during the statement (VmHWM, reset before each
statement through /proc/<pid>/clear_refs), its RSS after the statement and its RSS
after the clear; the statement's wall and server CPU seconds and the clear's
milliseconds. "Before" is the RSS once the table is filled and scanned once
without sqlml, so that InnoDB's buffer pool pages of the table are already counted.

A steady state means the after-clear RSS stops growing from cycle to cycle.

Bytes per cached answer: what the clear gave back (RSS after the statement minus RSS
after the clear) over the entries it dropped: the cache's whole cost per entry in the
server (key, answer, its slot in the table, allocator slack), its statement memo being
gone by then. The peak over the RSS after the statement is the statement's own (the
memo, the shim's row numbers, the warm-up's answers not yet in the memo).

Prints a table and writes bench/results/memory.json.
Run: `make bench BENCH=memory`, or `.venv/bin/python -m bench memory` (about a minute
at 1,000,000 rows; SQLML_BENCH_MEMORY_ROWS=200000 for a quicker look).
"""

from __future__ import annotations

import os
import time

from bench.bench_batching import cpu_s, fill, start_fake
from bench.common import ROOT, print_table, server_with_sqlml, write_results
from tests.doubles.fakeaws import FakeAWSControl

ROWS = int(os.environ.get("SQLML_BENCH_MEMORY_ROWS", "1000000"))
CYCLES = int(os.environ.get("SQLML_BENCH_MEMORY_CYCLES", "5"))
STATEMENT = ("SELECT SUM(aws_sagemaker_invoke_endpoint_real('sum-b', 'REAL', 10000, v)) FROM series "
             "WHERE (SELECT sqlml_warm_sagemaker('sum-b', 10000, v) FROM series) >= 0")


def status_kb(pid: int, field: str) -> int:
    """A /proc/<pid>/status field in kB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak(pid: int) -> None:
    """Restarts VmHWM from the current RSS (Linux >= 4.0; the server runs as our user)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def cycles(cur, pid: int, rows: int, n: int, statement: str = STATEMENT) -> dict:
    """n cycles of statement + sqlml_cache_clear() on a connection to the server `pid`;
    RSS figures in kB."""
    out = {"rss_before_kb": status_kb(pid, "VmRSS"), "cycles": []}
    for i in range(n):
        reset_peak(pid)
        cpu, started = cpu_s(pid), time.perf_counter()
        cur.execute(statement)
        total = cur.fetchone()[0]
        seconds, cpu = time.perf_counter() - started, cpu_s(pid) - cpu
        peak, after_statement = status_kb(pid, "VmHWM"), status_kb(pid, "VmRSS")
        started = time.perf_counter()
        cur.execute("SELECT sqlml_cache_clear()")
        cleared = cur.fetchone()[0]
        clear_ms = (time.perf_counter() - started) * 1000
        out["cycles"].append({"cycle": i + 1, "seconds": round(seconds, 2), "server_cpu_s": round(cpu, 2),
                              "clear_ms": round(clear_ms, 1), "peak_kb": peak,
                              "after_statement_kb": after_statement, "after_clear_kb": status_kb(pid, "VmRSS"),
                              "entries_cleared": cleared, "sum": float(total)})
        c = out["cycles"][-1]
        c["bytes_per_cached_answer"] = round((c["after_statement_kb"] - c["after_clear_kb"]) * 1024 / max(cleared, 1))
    return out


def run() -> dict:
    tmp = ROOT / ".run" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    proc, url = start_fake(tmp)
    fake = FakeAWSControl(url)
    try:
        fake.configure(latency_ms=0)
        settings = {"comprehend_endpoint_url": url, "sagemaker_endpoint_url": url, "timeout_s": "60"}
        with server_with_sqlml("mariadb", settings) as server, server.connect(database="bench") as conn:
            cur = conn.cursor()
            fill(cur, ROWS)
            cur.execute("SELECT SUM(v) FROM series")  # the table's pages into the buffer pool
            cur.fetchall()
            out = {"rows": ROWS, "statement": STATEMENT, **cycles(cur, server.pid, ROWS, CYCLES)}
    finally:
        proc.terminate()
        proc.wait(10)
    mb = lambda kb: f"{kb / 1024:,.0f}"  # noqa: E731
    before = out["rss_before_kb"]
    table = [[c["cycle"], mb(c["peak_kb"]), f"+{mb(c['peak_kb'] - before)}", mb(c["after_statement_kb"]),
              mb(c["after_clear_kb"]), f"{(c['after_clear_kb'] - before) / 1024:+,.0f}", f"{c['seconds']:.1f}",
              f"{c['server_cpu_s']:.1f}", f"{c['clear_ms']:.0f}", c["bytes_per_cached_answer"]]
             for c in out["cycles"]]
    print_table(f"Memory across cycles: MariaDB server RSS (MiB), batch path over {ROWS:,} rows then "
                f"sqlml_cache_clear(); before: {mb(before)} MiB",
                ["cycle", "peak", "peak vs before", "after statement", "after clear", "clear vs before", "s",
                 "cpu s", "clear ms", "B/answer"], table)
    last, second = out["cycles"][-1], out["cycles"][min(1, len(out["cycles"]) - 1)]
    out["summary"] = {"rss_before_kb": before, "rss_after_last_clear_kb": last["after_clear_kb"],
                      "growth_after_clear_cycle2_to_last_kb": last["after_clear_kb"] - second["after_clear_kb"],
                      "max_peak_kb": max(c["peak_kb"] for c in out["cycles"]),
                      "max_peak_growth_kb": max(c["peak_kb"] for c in out["cycles"]) - before,
                      "bytes_per_cached_answer": sorted(c["bytes_per_cached_answer"]
                                                        for c in out["cycles"])[len(out["cycles"]) // 2]}
    print(f"RSS after {len(out['cycles'])} cycles: {mb(last['after_clear_kb'])} MiB "
          f"({(last['after_clear_kb'] - before) / 1024:+,.0f} MiB vs before; "
          f"{out['summary']['growth_after_clear_cycle2_to_last_kb'] / 1024:+,.0f} MiB since cycle 2's clear)")
    print(f"peak growth over before: +{out['summary']['max_peak_growth_kb'] / 1024:,.0f} MiB; "
          f"the cache's cost per answer (median): {out['summary']['bytes_per_cached_answer']} bytes")
    write_results("memory", out)
    return out


if __name__ == "__main__":
    run()
