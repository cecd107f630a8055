"""`make bench`: every benchmark in turn."""

from bench import bench_batching, bench_crossing, bench_export

if __name__ == "__main__":
    bench_crossing.run()
    bench_batching.run()
    bench_export.run()
