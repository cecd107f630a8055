"""The application-side baseline: what a developer would write instead of the batch path.

Plain user code, no sqlml: PyMySQL reads (id, value) from the table, boto3's
sagemaker-runtime client sends the values as text/csv bodies of BATCH rows from
THREADS threads, the CSV answers are parsed and written back with
`executemany("INSERT ...")`, which PyMySQL turns into multi-row INSERTs.

Two shapes, both run by bench/bench_batching.py on the same server, table and fake
service as the batch path:

- `simple`: the three steps one after the other (fetch everything, score everything with
  `pool.map`, insert everything): the script most developers would write first.
- `pipelined`: the best plain version: the SELECT is streamed (SSCursor, fetchmany of
  BATCH rows), each chunk goes to the pool as soon as it is read, and finished chunks are
  inserted over a second connection while later ones are still being read or scored.
"""

from __future__ import annotations

import collections
import concurrent.futures
import resource
import time
from dataclasses import dataclass

import boto3
import pymysql
import pymysql.cursors
from botocore.config import Config

BATCH = 10_000
THREADS = 4


@dataclass
class AppRun:
    seconds: float
    cpu_s: float  # this process's user + system CPU over the run (all its threads)
    rows: int


def sagemaker_client(endpoint_url: str):
    """boto3's sagemaker-runtime client at `endpoint_url`, a connection per thread."""
    return boto3.client("sagemaker-runtime", endpoint_url=endpoint_url, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=Config(max_pool_connections=THREADS, retries={"max_attempts": 3}))


def score_chunk(client, endpoint: str, chunk) -> list[tuple[int, float]]:
    """One InvokeEndpoint for a chunk of (id, value) rows: [(id, score)] in the same order."""
    body = "\n".join(repr(v) for _, v in chunk).encode()
    answer = client.invoke_endpoint(EndpointName=endpoint, ContentType="text/csv", Body=body)
    scores = answer["Body"].read().decode().split()
    if len(scores) != len(chunk):
        raise RuntimeError(f"score_chunk: {endpoint} answered {len(scores)} rows for {len(chunk)}")
    return [(row[0], float(s)) for row, s in zip(chunk, scores, strict=True)]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def simple(connect, client, endpoint: str, select: str, insert: str) -> AppRun:
    """Fetch all rows, score them in BATCH-row chunks on THREADS threads, insert all answers."""
    cpu, started = _cpu(), time.perf_counter()
    with connect() as conn, conn.cursor() as cur:
        cur.execute(select)
        rows = cur.fetchall()
        chunks = [rows[i:i + BATCH] for i in range(0, len(rows), BATCH)]
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            answers = [a for part in pool.map(lambda c: score_chunk(client, endpoint, c), chunks) for a in part]
        cur.executemany(insert, answers)
        conn.commit()
    return AppRun(time.perf_counter() - started, _cpu() - cpu, len(answers))


def pipelined(connect, client, endpoint: str, select: str, insert: str) -> AppRun:
    """Stream the rows, score each BATCH-row chunk as soon as it is read, insert finished
    chunks over a second connection while the rest is still read and scored."""
    cpu, started, written = _cpu(), time.perf_counter(), 0
    with connect(cursorclass=pymysql.cursors.SSCursor) as reader, connect() as writer, \
            reader.cursor() as rcur, writer.cursor() as wcur, \
            concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
        pending: collections.deque = collections.deque()

        def write_done(wait: bool) -> int:
            n = 0
            while pending and (wait or pending[0].done()):
                answers = pending.popleft().result()
                wcur.executemany(insert, answers)
                n += len(answers)
            return n

        rcur.execute(select)
        while chunk := rcur.fetchmany(BATCH):
            pending.append(pool.submit(score_chunk, client, endpoint, chunk))
            written += write_done(wait=False)
        written += write_done(wait=True)
        writer.commit()
    return AppRun(time.perf_counter() - started, _cpu() - cpu, written)


SHAPES = {"simple": simple, "pipelined": pipelined}


def connector(host: str, port: int, user: str, database: str):
    """connect(**extra) for the app's connections: autocommit off, as a script's would be."""
    def connect(**extra):
        return pymysql.connect(host=host, port=port, user=user, password="", database=database,
                               autocommit=False, **extra)
    return connect
