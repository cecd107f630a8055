"""Training-data export: sqlml_export_s3 against the server's own SELECT ... INTO OUTFILE.

Writes generated rows into moto's S3 server (in this process, on 127.0.0.1) with
export_part_mb=8 and export_file_mb=64, on each server that can be started, and in the
same run writes the same SELECT to a local file with `SELECT ... INTO OUTFILE` (under the
server's secure_file_priv): the local file is the floor an export can hope to reach, and
"ratio" is export time over INTO OUTFILE time. The INTO OUTFILE of a CSV run uses the
CSV clauses (FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '"' LINES TERMINATED BY
'\\r\\n'), of a TEXT run the defaults, so both sides do the same quoting work.

Two shapes: "text" rows (id, a label holding a comma, a double, a note holding quotes or
NULL: every row needs quoting) and "numeric" rows (id and three doubles, the usual
SageMaker training CSV: nothing to quote). Memory: the server's RSS is sampled every
20 ms during each export; "peak RSS over start" is the highest sample minus the RSS just
before the export (after the INTO OUTFILE of the same rows, so the table is in the
buffer pool either way): what the export itself holds. If memory is bounded, 3M rows
cost no more than 1M. (The JSON also has the peak over the RSS before the first export
on that server, which includes the buffer pool growing as larger tables are filled.)
"server CPU" is the server process's user+system time during the statement (all
its threads: scan, formatting, checksums and signing of the parts), steadier than wall
time on a shared machine. Each statement runs REPEAT times; the best wall time and the
lowest CPU are kept.

SQLML_BENCH_EXPORT_SCALE (default 1) scales every row count, e.g. 0.2 while iterating.
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
from tests.doubles import motoserver

SCALE = float(os.environ.get("SQLML_BENCH_EXPORT_SCALE", "1"))
RUNS = tuple((shape, fmt, int(rows * SCALE)) for shape, fmt, rows in (
    ("text", "CSV", 1_000_000), ("numeric", "CSV", 1_000_000), ("text", "TEXT", 1_000_000),
    ("text", "CSV", 3_000_000)))
REPEAT = 2
PART_MB, FILE_MB = 8, 64
COLUMNS = {"text": "id, label, x, note", "numeric": "id, x, y, z"}
OUTFILE_CLAUSES = {"CSV": "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' LINES TERMINATED BY '\\r\\n'",
                   "TEXT": ""}


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
                f"FROM {k1} a, {k1} b, {k1} c WHERE c.n < {-(-rows // 1_000_000)} "
                f"LIMIT {rows}")


def measured(server, cur, sql: str, repeat: int, before_each=None) -> tuple[float, float, int, object]:
    """(best wall s, lowest server CPU s, peak RSS kB, last result) of `repeat` runs of sql."""
    best_s, best_cpu, peak, result = float("inf"), float("inf"), 0, None
    for _ in range(repeat):
        if before_each:
            before_each()
        cpu_before = cpu_s(server.pid)
        with RssSampler(server.pid) as sampler:
            started = time.perf_counter()
            cur.execute(sql)
            result = cur.fetchall()
            best_s = min(best_s, time.perf_counter() - started)
        best_cpu = min(best_cpu, cpu_s(server.pid) - cpu_before)
        peak = max(peak, sampler.peak)
    return best_s, best_cpu, peak, result


def run_server(kind: str, url: str, s3) -> list[dict]:
    settings = {"s3_endpoint_url": url, "export_part_mb": str(PART_MB), "export_file_mb": str(FILE_MB),
                "timeout_s": "60"}
    results = []
    with server_with_sqlml(kind, settings) as server, server.connect(database="bench") as conn:
        cur = conn.cursor()
        baseline = None
        filled = 0
        for shape, fmt, rows in RUNS:
            if rows != filled:
                fill(cur, rows)
                conn.commit()
                filled = rows
            columns = COLUMNS[shape]
            outfile = server.base_dir / f"bench-export-{shape}.out"

            def remove_outfile(outfile=outfile):
                outfile.unlink(missing_ok=True)

            local_s, local_cpu, _, _ = measured(
                server, cur, f"SELECT {columns} INTO OUTFILE '{outfile}' {OUTFILE_CLAUSES[fmt]} FROM export_rows",
                REPEAT, remove_outfile)
            local_bytes = outfile.stat().st_size
            remove_outfile()
            bucket = f"bench-{kind}-{shape}-{fmt.lower()}-{rows}"
            s3.create_bucket(Bucket=bucket)
            start = rss_kb(server.pid)
            baseline = baseline or start
            seconds, cpu, peak, result = measured(
                server, cur, f"SELECT sqlml_export_s3('s3://{bucket}/train', 'FORMAT {fmt} OVERWRITE ON', {columns}) "
                             "FROM export_rows", REPEAT)
            summary = json.loads(result[0][0])
            assert summary["rows"] == rows, summary
            mb = summary["bytes"] / 1024 / 1024
            results.append({"server": kind, "shape": shape, "format": fmt, "rows": rows, "bytes": summary["bytes"],
                            "files": len(summary["files"]), "seconds": round(seconds, 2),
                            "into_outfile_s": round(local_s, 2), "into_outfile_bytes": local_bytes,
                            "ratio": round(seconds / local_s, 2),
                            "s3_wait_s": summary["s3_wait_seconds"], "server_cpu_s": round(cpu, 2),
                            "server_cpu_us_per_row": round(cpu / rows * 1e6, 2),
                            "into_outfile_cpu_us_per_row": round(local_cpu / rows * 1e6, 2),
                            "rows_per_s": round(rows / seconds), "into_outfile_rows_per_s": round(rows / local_s),
                            "mb_per_s": round(mb / seconds, 1), "rss_baseline_mb": round(baseline / 1024),
                            "peak_over_baseline_mb": round((peak - baseline) / 1024, 1),
                            "peak_over_start_mb": round((peak - start) / 1024, 1)})
    return results


def run() -> dict:
    moto, url = start_moto()
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    results, skipped = [], {}
    try:
        for kind in ("mariadb", "mariadb118", "mysql"):  # every server leg make test runs
            try:
                results += run_server(kind, url, s3)
            except ServerUnavailable as exc:
                skipped[kind] = str(exc)
    finally:
        moto.stop()
    print_table(f"Export to S3 (moto on 127.0.0.1) against SELECT ... INTO OUTFILE, part {PART_MB} MiB, "
                f"file {FILE_MB} MiB, best of {REPEAT}",
                ["server", "shape", "format", "rows", "MB", "files", "export s", "INTO OUTFILE s", "ratio", "rows/s",
                 "waiting for S3 s", "server CPU us/row", "INTO OUTFILE CPU us/row", "peak RSS over start MB"],
                [[r["server"], r["shape"], r["format"], f"{r['rows']:,}", f"{r['bytes'] / 1048576:.1f}", r["files"],
                  r["seconds"], r["into_outfile_s"], r["ratio"], f"{r['rows_per_s']:,}", r["s3_wait_s"],
                  r["server_cpu_us_per_row"], r["into_outfile_cpu_us_per_row"], r["peak_over_start_mb"]]
                 for r in results])
    for kind, why in skipped.items():
        print(f"{kind}: not run: {why}")
    out = {"part_mb": PART_MB, "file_mb": FILE_MB, "repeat": REPEAT, "scale": SCALE, "results": results,
           "skipped": skipped}
    write_results("export", out)
    return out


if __name__ == "__main__":
    run()
