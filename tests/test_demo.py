"""`make demo`: the Makefile's own command (from `make -n demo`), on each MariaDB leg, in a temp dir.

It must print the seed queries' results, the batched variant, and the Aurora_ml
counters that variant produced, and stop everything it started. With the generated
series the known anomalies must all be found; `DATA=` runs it on NAB's nyc_taxi.csv
from the shared data folder (the project keeps no copy of it).
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import pytest

from demo.data import read_taxi_csv
from sqlml.local import demo_taxi_series
from tests.conftest import KINDS
from tests.servers import FLAVORS
from tests.test_up import ROOT, processes_of

NAB = ROOT.parent / "shared" / "data" / "nab" / "nyc_taxi.csv"
if not NAB.exists():
    NAB = Path("/work/shared/data/nab/nyc_taxi.csv")

# The demo is written for MariaDB (make demo's default): it runs on every MariaDB leg.
MARIADB_KINDS = [kind for kind in KINDS if FLAVORS[kind] == "mariadb"]
pytestmark = [
    pytest.mark.skipif(not MARIADB_KINDS, reason="the demo runs on MariaDB; SQLML_TEST_SERVERS excludes it"),
    pytest.mark.parametrize("server", MARIADB_KINDS or ["mariadb"]),
]


def run_demo(tmp_path: Path, server: str, data: Path | None = None) -> str:
    variables = [f"SERVER={server}"] + ([f"DATA={data}"] if data else [])
    dry = subprocess.run(["make", "-n", "demo", *variables], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    [command] = [line for line in dry.stdout.splitlines() if "-m demo " in line]
    result = subprocess.run(f"{command} --dir {tmp_path / 'demo'}", shell=True, cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert processes_of(tmp_path) == [], "the demo left processes running"
    assert result.stdout.rstrip().endswith("stopped the server and the local inference service")
    return result.stdout


def expected_requests(taxi: list[tuple[str, float]]) -> int:
    """The batch path's cost: the 18 reviews in one Comprehend request, the distinct
    readings in SageMaker requests of 10,000 (anomaly_score's max_batch_size)."""
    return 1 + math.ceil(len({float(v) for _, v in taxi}) / 10_000)


def counters_after_batch(output: str) -> dict[str, int]:
    block = output.split("-- what the batch path cost (difference)", 1)[1]
    return {name: int(value.replace(",", ""))
            for name, value in re.findall(r"^Aurora_ml_(\w+_cnt)\s+([\d,]+)$", block, re.M)}


def sentiment_rows(output: str, title: str) -> list[str]:
    block = output.split(f"-- {title}\n", 1)[1]
    return re.findall(r"^\d+\s+-?\d\.\d{5}\s+\d+\s*$", block.split("rows,", 1)[0], re.M)


def test_make_demo_prints_the_seed_queries_the_batched_variant_and_its_counters(tmp_path, server):
    out = run_demo(tmp_path, server)
    scalar = sentiment_rows(out, "seed query 1: average sentiment per product, confident assessments only")
    assert len(scalar) == 3 and scalar == sentiment_rows(out, "seed query 1, batched")
    assert "known anomalies of the generated series found: 5 of 5" in out
    counters = counters_after_batch(out)
    assert set(counters) == {"actual_request_cnt", "actual_response_cnt", "cache_hit_cnt", "logical_request_cnt",
                             "logical_response_cnt", "retry_request_cnt", "single_request_cnt"}
    assert counters["actual_request_cnt"] == expected_requests(demo_taxi_series()), counters
    assert counters["single_request_cnt"] == 0, counters
    assert counters["cache_hit_cnt"] == counters["logical_request_cnt"] > 20_000, counters


@pytest.mark.skipif(not NAB.exists(), reason=f"NAB's nyc_taxi.csv is not on this machine ({NAB})")
def test_make_demo_runs_the_anomaly_query_on_the_real_nab_series(tmp_path, server):
    out = run_demo(tmp_path, server, NAB)
    assert "-- seed query 2: anomalies over 10,320 taxi readings (NAB nyc_taxi)" in out
    scalar, batched = (re.search(r"-- readings above the cutoff%s\n.*?\n\((\d+) rows" % suffix, out, re.S).group(1)
                       for suffix in ("", ", batched"))
    assert int(scalar) == int(batched) > 0
    counters = counters_after_batch(out)
    assert counters["actual_request_cnt"] == expected_requests(read_taxi_csv(str(NAB))), counters
    assert counters["single_request_cnt"] == 0, counters
