#!/usr/bin/env python3
"""Baseline for `spindle-bench queue`: concurrent.futures.ProcessPoolExecutor(2) doing the
same no-op work as Spindle's process-worker benchmark.

Usage: queue_baseline.py TASKS ROUNDTRIPS
Prints one JSON object: {"tasks_per_s": …, "latency_us": …, "latency_p99_us": …}
  tasks_per_s     no-op tasks through the pool via map(chunksize=1), best of 3 rounds
  latency_us      median time to submit one no-op task and get its result
  latency_p99_us  its 99th percentile
"""
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def noop(x):
    return x


def main():
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    roundtrips = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    with ProcessPoolExecutor(2) as pool:
        # Warm up: start both workers.
        list(pool.map(noop, range(100), chunksize=1))
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            total = sum(pool.map(noop, range(tasks), chunksize=1))
            dt = time.perf_counter() - t0
            assert total == tasks * (tasks - 1) // 2
            rates.append(tasks / dt)
        samples = []
        for i in range(roundtrips):
            t0 = time.perf_counter()
            assert pool.submit(noop, i).result() == i
            samples.append(time.perf_counter() - t0)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(json.dumps({"tasks_per_s": max(rates), "latency_us": statistics.median(samples) * 1e6,
                      "latency_p99_us": p99 * 1e6}))


if __name__ == "__main__":
    main()
