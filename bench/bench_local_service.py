"""Benchmark of the local inference service (sqlml.local, `sqlml serve`).

Starts the service (the shipped demo RCF endpoint, plus an XGBoost endpoint when
xgboost and numpy are installed) with one worker per CPU, then measures for a few
seconds each:

* Comprehend DetectSentiment (1 text per call) and BatchDetectSentiment (25 per call):
  texts/s;
* SageMaker InvokeEndpoint on the RCF endpoint with 1-, 100- and 10,000-row CSV bodies
  (and 10,000 rows on XGBoost): rows/s;
* per-request overhead: sequential latency of the cheapest calls over one keep-alive
  connection, and the service's own CPU time per request (from /proc, all workers).

Two clients: boto3 (a typical AWS client: SigV4 signing and parsing cost ~0.4 ms of
client CPU per call on a fast machine; sqlml itself signs with botocore's signer but
sends through its own lean client, services/lean.py) and raw HTTP/1.1 keep-alive
(http.client, pre-encoded bodies),
which shows more of the service's own capacity. Both run as threads of this one
process, on the same machine as the service: on a small machine the client competes
with the workers for the cores, so the figures are a floor, not the service's ceiling.

Prints a table and writes bench/results/local_service.json.
Run: `make bench` (all benchmarks), or `.venv/bin/python -m bench local_service` (about 45 s).
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

from bench.common import write_results
from sqlml.local import demo_taxi_series, serve

DEMO = "random-cut-forest-model-demo"
SECONDS = 2.5  # per measurement
THREADS = 8
TEXT = "The food was great but the service was terribly slow, and the room was noisy."
TARGET = "Comprehend_20171127."
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _csv_body(rows: int) -> bytes:
    values = [v for _, v in demo_taxi_series()]
    return "".join(f"{values[i % len(values)]}\n" for i in range(rows)).encode()


def _xgb_model(directory: str) -> tuple[str, int] | None:
    try:
        import numpy as np
        import xgboost
    except ImportError:
        return None
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 8))
    y = (x[:, 0] + x[:, 1] * 0.5 - x[:, 2] > 0).astype(int)
    booster = xgboost.train({"objective": "binary:logistic", "max_depth": 6, "nthread": 1},
                            xgboost.DMatrix(x, label=y), num_boost_round=100)
    path = os.path.join(directory, "xgb.json")
    booster.save_model(path)
    return path, 8


def _worker_cpu_s(supervisor_pid: int) -> float:
    """User+system CPU seconds of the service's worker processes so far."""
    total = 0.0
    try:
        children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text().split()
    except OSError:
        return float("nan")
    for pid in [supervisor_pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


class _Raw:
    """One keep-alive HTTP/1.1 connection sending a fixed, pre-encoded request."""

    def __init__(self, url: str, path: str, body: bytes, headers: dict[str, str]):
        host, port = url.rsplit("//", 1)[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.path, self.body, self.headers = path, body, headers

    def __call__(self) -> bytes:
        self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"HTTP {r.status}: {data[:200]!r}")
        return data


def _run(make_call, threads: int, seconds: float, service_pid: int) -> dict:
    """Call make_call()() from *threads* threads for *seconds*; return counts and latencies."""
    calls = [make_call() for _ in range(threads)]
    for call in calls:
        call()  # warm: connections open, first request parsed
    stop = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def loop(i: int) -> None:
        call, lat = calls[i], latencies[i]
        try:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                call()
                lat.append(time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    cpu0 = _worker_cpu_s(service_pid)
    t0 = time.perf_counter()
    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - t0
    cpu = _worker_cpu_s(service_pid) - cpu0
    if errors:
        raise RuntimeError(f"{len(errors)} calls failed, first: {errors[0]!r}")
    flat = sorted(x for lat in latencies for x in lat)
    n = len(flat)
    return {
        "requests": n,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(n / elapsed, 1),
        "p50_ms": round(flat[n // 2] * 1000, 3),
        "p99_ms": round(flat[min(n - 1, int(n * 0.99))] * 1000, 3),
        "service_cpu_ms_per_request": round(cpu * 1000 / n, 3) if n else None,
    }


def run() -> dict:
    """Runs every measurement, prints the table, writes bench/results/local_service.json."""
    with tempfile.TemporaryDirectory(prefix="sqlml-bench-") as tmp:
        results = _bench(tmp)
    _print_table(results)
    write_results("local_service", results)
    return results


def main() -> int:
    run()
    return 0


def _bench(tmp: str) -> dict:
    endpoints = {DEMO: {"model": "rcf", "train": "demo-taxi"}}
    xgb = _xgb_model(tmp)
    if xgb:
        endpoints["bench-xgb"] = {"model": "xgboost", "path": xgb[0]}
    t0 = time.perf_counter()
    service = serve({"endpoints": endpoints})
    start_s = time.perf_counter() - t0
    url = service.url
    results: dict = {
        "service": {"workers": len(Path(f"/proc/{service.pid}/task/{service.pid}/children").read_text().split()),
                    "start_s": round(start_s, 2), "client_threads": THREADS, "seconds_per_measurement": SECONDS},
        "measurements": [],
    }
    cfg = Config(retries={"mode": "standard", "total_max_attempts": 1}, max_pool_connections=THREADS * 2,
                 connect_timeout=5, read_timeout=120)
    creds = dict(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    cm = boto3.client("comprehend", endpoint_url=url, config=cfg, **creds)
    sm = boto3.client("sagemaker-runtime", endpoint_url=url, config=cfg, **creds)
    single = json.dumps({"Text": TEXT, "LanguageCode": "en"}).encode()
    batch = json.dumps({"TextList": [TEXT] * 25, "LanguageCode": "en"}).encode()
    cj = "application/x-amz-json-1.1"

    def comprehend_raw(op: str, body: bytes):
        return lambda: _Raw(url, "/", body, {"X-Amz-Target": TARGET + op, "Content-Type": cj})

    def invoke_raw(endpoint: str, body: bytes):
        return lambda: _Raw(url, f"/endpoints/{endpoint}/invocations", body,
                            {"Content-Type": "text/csv", "Accept": "text/csv"})

    def invoke_boto(endpoint: str, body: bytes):
        def call():
            return sm.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType="text/csv",
                                      Accept="text/csv")["Body"].read()
        return lambda: call

    plan = [
        # (name, client, items per request, unit, factory, threads)
        ("DetectSentiment", "boto3", 1, "texts",
         lambda: lambda: cm.detect_sentiment(Text=TEXT, LanguageCode="en"), THREADS),
        ("DetectSentiment", "raw", 1, "texts", comprehend_raw("DetectSentiment", single), THREADS),
        ("BatchDetectSentiment x25", "boto3", 25, "texts",
         lambda: lambda: cm.batch_detect_sentiment(TextList=[TEXT] * 25, LanguageCode="en"), THREADS),
        ("BatchDetectSentiment x25", "raw", 25, "texts", comprehend_raw("BatchDetectSentiment", batch), THREADS),
    ]
    for rows in (1, 100, 10_000):
        body = _csv_body(rows)
        plan.append((f"InvokeEndpoint rcf {rows} rows", "boto3", rows, "rows", invoke_boto(DEMO, body),
                     THREADS if rows < 10_000 else 4))
        plan.append((f"InvokeEndpoint rcf {rows} rows", "raw", rows, "rows", invoke_raw(DEMO, body),
                     THREADS if rows < 10_000 else 4))
    if xgb:
        import numpy as np

        x = np.random.default_rng(2).normal(size=(10_000, xgb[1]))
        body = "".join(",".join(f"{v:.5f}" for v in row) + "\n" for row in x).encode()
        plan.append(("InvokeEndpoint xgboost 10000 rows", "raw", 10_000, "rows", invoke_raw("bench-xgb", body), 4))
    # per-request overhead: one connection, one request at a time, cheapest calls
    plan.append(("overhead: InvokeEndpoint 1 row, sequential", "raw", 1, "rows",
                 invoke_raw(DEMO, b"12000\n"), 1))
    plan.append(("overhead: InvokeEndpoint 1 row, sequential", "boto3", 1, "rows",
                 invoke_boto(DEMO, b"12000\n"), 1))
    plan.append(("overhead: GET /ping, sequential", "raw", 0, "requests",
                 lambda: _Ping(url), 1))

    try:
        for name, client, items, unit, factory, threads in plan:
            m = _run(factory, threads, SECONDS, service.pid)
            m.update(name=name, client=client, threads=threads, items_per_request=items, unit=unit,
                     items_per_s=round(m["requests"] * items / m["seconds"], 1))
            results["measurements"].append(m)
            print(f"  {name:<44} {client:<5} {m['items_per_s']:>10,.0f} {unit}/s", file=sys.stderr, flush=True)
    finally:
        service.stop()
    return results


class _Ping:
    def __init__(self, url: str):
        host, port = url.rsplit("//", 1)[1].split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=10)

    def __call__(self) -> bytes:
        self.conn.request("GET", "/ping")
        return self.conn.getresponse().read()


def _print_table(results: dict) -> None:
    svc = results["service"]
    print(f"\nsqlml local service: {svc['workers']} workers on {os.cpu_count()} CPUs, started in {svc['start_s']} s "
          f"(includes RCF training); client threads in this same process")
    header = f"{'measurement':<44} {'client':<6} {'thr':>3} {'items/s':>11} {'req/s':>9} {'p50 ms':>8} " \
             f"{'p99 ms':>8} {'svc CPU ms/req':>14}"
    print(header)
    print("-" * len(header))
    for m in results["measurements"]:
        items = f"{m['items_per_s']:,.0f} {m['unit'][:4]}" if m["items_per_request"] else "-"
        print(f"{m['name']:<44} {m['client']:<6} {m['threads']:>3} {items:>11} {m['requests_per_s']:>9,.0f} "
              f"{m['p50_ms']:>8.3f} {m['p99_ms']:>8.3f} {m['service_cpu_ms_per_request']:>14.3f}")


if __name__ == "__main__":
    sys.exit(main())
