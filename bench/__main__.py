"""`make bench`: every benchmark in turn."""

from bench import bench_batching, bench_crossing

if __name__ == "__main__":
    bench_crossing.run()
    bench_batching.run()
