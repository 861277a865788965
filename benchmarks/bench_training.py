"""Training throughput at world size 1 and 2, and the Prefect + Dask overhead per training task.

Measured side by side in one run on the same snapshot:
  direct      the rank function called in this process (the baseline: no Prefect, no Dask)
  task, 1     the Prefect training task, one rank in-process
  task, 2     the Prefect training task, DDP over a LocalCluster of two worker processes
Run: .venv/bin/python -m benchmarks.bench_training [--rows N] [--epochs E]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

# Every attempt trains: none may be served from the task cache.
os.environ["CONVEYOR_FORCE_RECOMPUTE"] = "1"

from tasks.cluster import ClusterSpec
from tasks.data import snapshot_partition
from tasks.synthetic import generate_telemetry, write_partition
from tasks.training import TrainingParams, train_model, train_rank


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    params = TrainingParams(epochs=args.epochs)
    day = dt.date(2026, 1, 1)
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness():
        root = Path(tmp)
        snapshot = snapshot_partition.fn(write_partition(generate_telemetry(args.rows, day), root, day), root / "store")

        def direct(attempt: int) -> tuple[float, int]:
            # In a worker thread, as the task runs it: torch's intra-op thread count is per thread.
            start = time.perf_counter()
            with ThreadPoolExecutor(1) as pool:
                folder = str(root / f"direct-{attempt}")
                rows = pool.submit(train_rank, 0, 1, None, snapshot.path, params, folder).result()["train_rows"]
            return time.perf_counter() - start, rows

        def as_task(workers: int, attempt: int) -> float:
            return train_model(snapshot, params, ClusterSpec(workers=workers)).wall_s

        # Interleaved and repeated; the best of each is compared, so background load hurts all alike.
        runs: dict[str, list[float]] = {"direct": [], "task, 1": [], "task, 2": []}
        for attempt in range(args.repeats):
            seconds, rows = direct(attempt)
            runs["direct"].append(seconds)
            runs["task, 1"].append(as_task(1, attempt))
            runs["task, 2"].append(as_task(2, attempt))
    best = {name: min(times) for name, times in runs.items()}
    samples = rows * args.epochs
    print(f"{rows:,} training rows x {args.epochs} epochs = {samples:,} samples; best of {args.repeats}")
    for name, seconds in best.items():
        ratio = seconds / best["direct"]
        print(f"{name:<8} {seconds:7.1f} s  {samples / seconds:>10,.0f} samples/s  ({ratio:.2f}x direct)")
    overhead = best["task, 1"] / best["direct"] - 1
    speedup = best["task, 1"] / best["task, 2"]
    print(f"Prefect task overhead at world size 1: {overhead:+.1%} of the direct call (goal <= 5 % on a 60 s job)")
    print(f"scaling 1 -> 2 ranks: speed-up {speedup:.2f}x, efficiency {speedup / 2:.0%}")


if __name__ == "__main__":
    main()
