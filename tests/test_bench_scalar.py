"""bench/bench_scalar.py's arithmetic: which run each figure comes from, the ratios to the C
baselines of the same statement pattern, and the issue-16 target verdicts. Pure Python: the
benchmark itself runs the servers (`make bench BENCH=scalar`)."""

import pytest

from bench.bench_scalar import CURL, NOOP, ONE_STATEMENT, PER_STATEMENT, SQLML, Run, best, summarise


def run(function, pattern, rows, seconds, server_cpu_s, requests=None):
    return Run(function, pattern, rows, rows if requests is None else requests, seconds, server_cpu_s, 0.0, 0.0)


def test_best_takes_the_least_wall_and_the_least_cpu_of_the_repeats():
    chosen = best([run(SQLML, ONE_STATEMENT, 100, 2.0, 0.010), run(SQLML, ONE_STATEMENT, 100, 1.0, 0.030)])
    assert (chosen.seconds, chosen.server_cpu_s) == (1.0, 0.010)


def test_best_refuses_runs_of_different_sizes():
    with pytest.raises(ValueError, match="different shapes or sizes"):
        best([run(SQLML, ONE_STATEMENT, 100, 1.0, 0.01), run(SQLML, ONE_STATEMENT, 200, 1.0, 0.01)])


def test_summarise_compares_each_shape_with_the_baselines_of_its_own_pattern():
    results = {r["shape"]: r for r in summarise([
        run(NOOP, ONE_STATEMENT, 1000, 0.001, 0.001, requests=0),
        run(CURL, ONE_STATEMENT, 100, 0.010, 0.005),
        run(SQLML, ONE_STATEMENT, 100, 0.025, 0.010),
        run(NOOP, PER_STATEMENT, 10, 0.001, 0.0005, requests=0),
        run(CURL, PER_STATEMENT, 10, 0.004, 0.001),
        run(SQLML, PER_STATEMENT, 10, 0.002, 0.002, requests=9),
    ])}
    one = results[f"{SQLML}, {ONE_STATEMENT}"]
    assert one["server_cpu_us_per_row"] == 100.0
    assert one["server_cpu_vs_noop"] == 100.0  # 100 us against the no-op's 1 us
    assert (one["server_cpu_vs_curl"], one["rows_per_s_vs_curl"]) == (2.0, 0.4)
    assert one["server_cpu_target_met"] and not one["rows_per_s_target_met"]  # 100 us; 4,000 rows/s
    per = results[f"{SQLML}, {PER_STATEMENT}"]
    assert (per["server_cpu_vs_noop"], per["server_cpu_vs_curl"], per["rows_per_s_vs_curl"]) == (4.0, 2.0, 2.0)
    assert not per["server_cpu_target_met"] and per["rows_per_s_target_met"]  # 200 us; 5,000 rows/s (the bound is met)
    assert per["one_request_per_row"] is False and one["one_request_per_row"] is True
    assert "server_cpu_vs_curl" not in results[f"{NOOP}, {ONE_STATEMENT}"]  # the no-op makes no request
