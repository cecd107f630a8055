"""Training-data export: rows/s, MB/s and the server's memory while sqlml_export_s3 streams to S3.

Writes generated rows as CSV with a header into moto's S3 server (in this process, on
127.0.0.1) with export_part_mb=8 and export_file_mb=64, on each server that can be
started. Two shapes: "text" rows (id, a label holding a comma, a double, a note holding
quotes or NULL: every row needs quoting) and "numeric" rows (id and three doubles, the
usual SageMaker training CSV: nothing to quote). Memory: the server's RSS is sampled
every 20 ms during each export; "peak over baseline" is the highest sample minus the
RSS before the first export on that server. If memory is bounded, 3M rows cost no
more than 1M. "scan only" is the same query summed on the server, no export. "server
CPU" is the server process's user+system time during the export (all its threads:
scan, formatting, checksums and signing of the parts), steadier than wall time on a
shared machine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

import boto3
from moto.server import ThreadedMotoServer

from bench.common import ServerUnavailable, print_table, server_with_sqlml, thousand, write_results
from tests import motoserver

RUNS = (("text", 1_000_000), ("text", 3_000_000), ("numeric", 1_000_000))
PART_MB, FILE_MB = 8, 64
COLUMNS = {"text": "id, label, x, note", "numeric": "id, x, y, z"}


def start_moto() -> tuple[ThreadedMotoServer, str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    return motoserver.start_moto()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


class RssSampler:
    """The highest RSS of a process while it runs, sampled every 20 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, rss_kb(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_kb(self.pid))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def fill(cur, rows: int) -> None:
    k1 = thousand(cur)
    cur.execute("DROP TABLE IF EXISTS bench.export_rows")
    cur.execute("CREATE TABLE bench.export_rows (id INT PRIMARY KEY, label VARCHAR(20), x DOUBLE, note VARCHAR(40), "
                "y DOUBLE, z DOUBLE)")
    cur.execute(f"INSERT INTO bench.export_rows SELECT a.n * 1000 + b.n + c.n * 1000000, CONCAT('item,', b.n), "
                f"(a.n * 1000 + b.n) / 7, IF(b.n % 10 = 0, NULL, 'a \"quoted\" note'), a.n * 0.5, b.n - 500 "
                f"FROM {k1} a, {k1} b, {k1} c WHERE c.n < {rows // 1_000_000}")


def run_server(kind: str, url: str, s3) -> list[dict]:
    settings = {"s3_endpoint_url": url, "export_part_mb": str(PART_MB), "export_file_mb": str(FILE_MB),
                "timeout_s": "60"}
    results = []
    with server_with_sqlml(kind, settings) as server, server.connect(database="bench") as conn:
        cur = conn.cursor()
        baseline = None
        filled = 0
        for shape, rows in RUNS:
            if rows != filled:
                fill(cur, rows)
                conn.commit()
                filled = rows
            columns = COLUMNS[shape]
            started = time.perf_counter()
            cur.execute(f"SELECT SUM(LENGTH(CONCAT_WS(',', {columns}))) FROM export_rows")
            cur.fetchall()
            scan_s = time.perf_counter() - started
            bucket = f"bench-{kind}-{shape}-{rows}"
            s3.create_bucket(Bucket=bucket)
            before = rss_kb(server.pid)
            baseline = baseline or before
            cpu_before = cpu_s(server.pid)
            with RssSampler(server.pid) as sampler:
                started = time.perf_counter()
                cur.execute(f"SELECT sqlml_export_s3('s3://{bucket}/train', 'FORMAT CSV HEADER', {columns}) "
                            "FROM export_rows")
                summary = json.loads(cur.fetchone()[0])
                seconds = time.perf_counter() - started
            cpu = cpu_s(server.pid) - cpu_before
            assert summary["rows"] == rows, summary
            mb = summary["bytes"] / 1024 / 1024
            results.append({"server": kind, "shape": shape, "rows": rows, "bytes": summary["bytes"],
                            "files": len(summary["files"]), "seconds": round(seconds, 2),
                            "s3_wait_s": summary["s3_wait_seconds"], "server_cpu_s": round(cpu, 2),
                            "server_cpu_us_per_row": round(cpu / rows * 1e6, 2),
                            "rows_per_s": round(rows / seconds), "mb_per_s": round(mb / seconds, 1),
                            "scan_only_s": round(scan_s, 2), "rss_baseline_mb": round(baseline / 1024),
                            "peak_over_baseline_mb": round((sampler.peak - baseline) / 1024, 1)})
    return results


def run() -> dict:
    moto, url = start_moto()
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    results, skipped = [], {}
    try:
        for kind in ("mariadb", "mysql"):
            try:
                results += run_server(kind, url, s3)
            except ServerUnavailable as exc:
                skipped[kind] = str(exc)
    finally:
        moto.stop()
    print_table(f"Export to S3 (moto on 127.0.0.1), CSV with header, part {PART_MB} MiB, file {FILE_MB} MiB",
                ["server", "shape", "rows", "MB", "files", "seconds", "rows/s", "MB/s", "scan only s",
                 "waiting for S3 s", "server CPU us/row", "peak RSS over baseline MB"],
                [[r["server"], r["shape"], f"{r['rows']:,}", f"{r['bytes'] / 1048576:.1f}", r["files"], r["seconds"],
                  f"{r['rows_per_s']:,}", r["mb_per_s"], r["scan_only_s"], r["s3_wait_s"],
                  r["server_cpu_us_per_row"], r["peak_over_baseline_mb"]]
                 for r in results])
    for kind, why in skipped.items():
        print(f"{kind}: not run: {why}")
    out = {"part_mb": PART_MB, "file_mb": FILE_MB, "results": results, "skipped": skipped}
    path = write_results("export", out)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    run()
