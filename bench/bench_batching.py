"""Batching: the scalar path vs the SQL-only batch path vs 16 coalesced connections.

Against tests/fakeaws (a separate process on 127.0.0.1) with 0, 5 and 20 ms of injected
latency per request. For each shape: rows, requests, rows/s, requests per row, and the
ratio of rows/s to the scalar path's measured in the same run. The scalar path runs on
fewer rows (one request per row would take minutes); rates are comparable.
"""

from __future__ import annotations

import concurrent.futures
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, print_table, server_with_sqlml, thousand, write_results
from tests.fakeaws import FakeAWSControl

BATCH_ROWS = {0: 1_000_000, 5: 200_000, 20: 200_000}
SCALAR_ROWS = {0: 2_000, 5: 300, 20: 100}
COMPREHEND_TEXTS = 100_000
CONNECTIONS = 16
CALLS_PER_CONNECTION = 40


def start_fake(tmp: Path):
    port_file = tmp / "fake.port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakeaws", "--port", "0", "--port-file", str(port_file)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (port_file.exists() and port_file.read_text().strip()):
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(port_file.read_text())}"


def fill(cur, rows: int) -> None:
    k1 = thousand(cur)
    cur.execute("DROP TABLE IF EXISTS bench.series")
    cur.execute("CREATE TABLE bench.series (n INT PRIMARY KEY, v DOUBLE)")
    cur.execute(f"INSERT INTO bench.series SELECT a.n * 1000 + b.n, (a.n * 1000 + b.n) * 0.25 "
                f"FROM {k1} a, {k1} b WHERE a.n * 1000 + b.n < {rows}")


def measure(cur, fake, sql: str) -> tuple[float, int]:
    cur.execute("SELECT sqlml_cache_clear()")
    fake.clear_stats()
    started = time.perf_counter()
    cur.execute(sql)
    cur.fetchall()
    return time.perf_counter() - started, fake.stats(log=False)["requests"]


def rss_kb(server) -> int:
    with open(f"/proc/{server.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def run() -> dict:
    tmp = ROOT / ".run" / "bench"
    tmp.mkdir(parents=True, exist_ok=True)
    proc, url = start_fake(tmp)
    fake = FakeAWSControl(url)
    out, table = {}, []
    try:
        settings = {"comprehend_endpoint_url": url, "sagemaker_endpoint_url": url, "timeout_s": "60"}
        with server_with_sqlml("mariadb", settings) as server, server.connect(database="bench") as conn:
            cur = conn.cursor()
            for latency in (0, 5, 20):
                fake.configure(latency_ms=latency)
                n_scalar, n_batch = SCALAR_ROWS[latency], BATCH_ROWS[latency]
                fill(cur, n_scalar)
                t, reqs = measure(cur, fake, "SELECT SUM(aws_sagemaker_invoke_endpoint_real('sum-b', 'REAL', "
                                             "10000, v)) FROM series")
                scalar_rate = n_scalar / t
                rows = [("scalar, 1 connection", n_scalar, reqs, t)]
                fill(cur, n_batch)
                rss_before = rss_kb(server)
                t, reqs = measure(cur, fake, "SELECT SUM(aws_sagemaker_invoke_endpoint_real('sum-b', 'REAL', 10000, v)) "
                                             "FROM series WHERE (SELECT sqlml_warm_sagemaker('sum-b', 10000, v) "
                                             "FROM series) >= 0")
                rows.append(("batch path (warm-up)", n_batch, reqs, t))
                rss_growth = rss_kb(server) - rss_before
                for coalesce in ("on", "off"):
                    installer_settings = dict(settings, coalesce=coalesce)
                    from sqlml import installer
                    installer.write_atomically(str(server.plugin_dir / "sqlml.cnf"),
                                               installer.cnf_text(installer_settings, sys.executable).encode())
                    time.sleep(1.2)
                    cur.execute("SELECT sqlml_status()")  # statement start: picks the file up
                    cur.execute("SELECT sqlml_cache_clear()")
                    fake.clear_stats()
                    started = time.perf_counter()

                    def work(w):
                        with server.connect(database="bench") as c, c.cursor() as k:
                            for i in range(CALLS_PER_CONNECTION):
                                k.execute("SELECT aws_sagemaker_invoke_endpoint_real('sum-b', 'REAL', 10000, %s)",
                                          (w * 100000 + i,))
                                k.fetchall()

                    with concurrent.futures.ThreadPoolExecutor(CONNECTIONS) as pool:
                        list(pool.map(work, range(CONNECTIONS)))
                    t = time.perf_counter() - started
                    rows.append((f"16 connections, coalescing {coalesce}", CONNECTIONS * CALLS_PER_CONNECTION,
                                 fake.stats(log=False)["requests"], t))
                installer.write_atomically(str(server.plugin_dir / "sqlml.cnf"),
                                           installer.cnf_text(settings, sys.executable).encode())
                time.sleep(1.2)
                cur.execute("SELECT sqlml_status()")
                results = []
                for name, n, reqs, t in rows:
                    rate = n / t
                    results.append({"shape": name, "rows": n, "requests": reqs, "seconds": round(t, 3),
                                    "rows_per_s": round(rate), "requests_per_row": round(reqs / n, 5),
                                    "us_per_row": round(t / n * 1e6, 2), "vs_scalar": round(rate / scalar_rate, 1)})
                    table.append([f"{latency} ms", name, f"{n:,}", f"{reqs:,}", f"{reqs / n:.5f}", f"{rate:,.0f}",
                                  f"{t / n * 1e6:.1f}", f"{rate / scalar_rate:.1f}x"])
                expected = math.ceil(n_batch / 10000)
                out[f"sagemaker_{latency}ms"] = {"results": results, "batch_requests_expected": expected,
                                                 "batch_peak_rss_growth_kb": rss_growth}
            # Comprehend: 100,000 texts through the batch path, 25 per request.
            fake.configure(latency_ms=0)
            cur.execute("DROP TABLE IF EXISTS bench.texts")
            cur.execute("CREATE TABLE bench.texts (n INT PRIMARY KEY, t VARCHAR(100))")
            cur.execute(f"INSERT INTO bench.texts SELECT n, CONCAT(IF(n % 3 = 0, 'good ', 'bad '), n) FROM series "
                        f"WHERE n < {COMPREHEND_TEXTS}")
            t, reqs = measure(cur, fake, "SELECT COUNT(*) FROM texts WHERE (SELECT sqlml_warm_comprehend(t, 'en') "
                                         "FROM texts) >= 0 AND aws_comprehend_detect_sentiment(t, 'en') = 'POSITIVE'")
            out["comprehend_batch_0ms"] = {"texts": COMPREHEND_TEXTS, "requests": reqs, "seconds": round(t, 3),
                                           "texts_per_s": round(COMPREHEND_TEXTS / t)}
            table.append(["0 ms", "Comprehend batch path", f"{COMPREHEND_TEXTS:,}", f"{reqs:,}",
                          f"{reqs / COMPREHEND_TEXTS:.5f}", f"{COMPREHEND_TEXTS / t:,.0f}",
                          f"{t / COMPREHEND_TEXTS * 1e6:.1f}", ""])
    finally:
        proc.terminate()
        proc.wait(10)
    print_table("Batching (SageMaker sum endpoint unless noted; max_batch_size 10000, Comprehend 25)",
                ["latency", "shape", "rows", "requests", "req/row", "rows/s", "us/row", "vs scalar"], table)
    path = write_results("batching", out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    run()
