"""`make bench`: every benchmark in turn, or the ones named (`python -m bench local_service`)."""

import sys

from bench import bench_batching, bench_crossing, bench_export, bench_local_service, bench_memory, bench_rewrite, \
    bench_scalar

BENCHMARKS = {
    "crossing": bench_crossing.run,
    "batching": bench_batching.run,
    "scalar": bench_scalar.run,
    "local_service": bench_local_service.run,
    "rewrite": bench_rewrite.run,
    "export": bench_export.run,
    "memory": bench_memory.run,
}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for name in names:
        BENCHMARKS[name]()
