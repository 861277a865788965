"""Training throughput at world size 1 and 2 (PyTorch DDP and xgboost.dask), and the Prefect + Dask overhead.

Measured side by side in one run on the same snapshot, interleaved, best of --repeats:
  torch direct          the rank function called in this process (the baseline: no Prefect, no Dask)
  torch task            the Prefect "Train model" task, one rank in-process
  torch task, 1x2       the task with one rank on a Dask cluster of 1 worker x 2 threads (reached by address)
  torch task, 2x1       the task with two DDP ranks on a Dask cluster of 2 workers x 1 thread
  xgboost direct        fit_booster called in this process with 2 threads (the baseline)
  xgboost task          the Prefect "Train XGBoost model" task in-process
  xgboost task, 1x2     the task through xgboost.dask on 1 worker x 2 threads
  xgboost task, 2x1     the task through xgboost.dask on 2 workers x 1 thread
Both Dask clusters are `dask scheduler` + `dask worker` processes started before timing (so start-up is not in
the figures, and no scheduler thread in this process competes for the GIL with the in-process runs), and one
untimed round warms every variant up.
Every time is taken around the whole call, Prefect's task-run bookkeeping included.
Run: .venv/bin/python -m benchmarks.bench_training [--rows N] [--epochs E] [--rounds R] [--repeats K]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from prefect.testing.utilities import prefect_test_harness

# Every attempt trains: none may be served from the task cache.
os.environ["CONVEYOR_FORCE_RECOMPUTE"] = "1"

from conveyor.data.snapshots import snapshot_partition
from conveyor.data.store import DataStore
from conveyor.data.synthetic import generate_telemetry, write_partition
from conveyor.models.boosting import BoostingParams, fit_booster, train_xgboost
from conveyor.models.cluster import ClusterSpec
from conveyor.models.training import TrainingParams, train_model, train_rank
from conveyor.schema.spec import feature_encoding
from conveyor.schema.telemetry import TELEMETRY

ENCODING = feature_encoding(TELEMETRY, {})


@contextmanager
def dask_cluster(folder: Path, workers: int, threads: int) -> Iterator[str]:
    """A scheduler and `workers` worker processes of `threads` threads each, in their own processes; its address."""
    scheduler_file = folder / f"scheduler-{workers}x{threads}.json"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(scheduler_file),
             "--port", "0", "--dashboard-address", ":0"],
            **quiet,  # type: ignore[call-overload]
        )
    ]  # fmt: skip
    while not scheduler_file.exists():
        time.sleep(0.2)
    started.append(
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
             "--nworkers", str(workers), "--nthreads", str(threads), "--dashboard-address", ":0"],
            **quiet,  # type: ignore[call-overload]
        )
    )  # fmt: skip
    try:
        yield str(json.loads(scheduler_file.read_text())["address"])
    finally:
        for process in started:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait()


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    training = TrainingParams(epochs=args.epochs)
    boosting = BoostingParams(rounds=args.rounds)
    day = dt.date(2026, 1, 1)
    with (
        tempfile.TemporaryDirectory() as tmp,
        prefect_test_harness(),
        dask_cluster(Path(tmp), workers=2, threads=1) as two_by_one,
        dask_cluster(Path(tmp), workers=1, threads=2) as one_by_two,
    ):
        root = Path(tmp)
        snapshot = snapshot_partition.fn(
            write_partition(generate_telemetry(args.rows, day), root, day), DataStore(url=str(root / "store"))
        )
        spec_2x1 = ClusterSpec(workers=2, scheduler=two_by_one)
        spec_1x2 = ClusterSpec(workers=1, scheduler=one_by_two)
        counter = iter(range(1_000_000))

        def workdir() -> Path:
            return root / f"run-{next(counter)}"

        def torch_direct() -> None:
            # In a worker thread, as the task runs it: torch's intra-op thread count is per thread.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(train_rank, 0, 1, None, snapshot.path, ENCODING, training, str(workdir())).result()

        runs: dict[str, Callable[[], object]] = {
            "torch direct": torch_direct,
            "torch task": lambda: train_model(snapshot, TELEMETRY, training),
            "torch task, 1x2": lambda: train_model(snapshot, TELEMETRY, training, spec_1x2),
            "torch task, 2x1": lambda: train_model(snapshot, TELEMETRY, training, spec_2x1),
            "xgboost direct": lambda: fit_booster(snapshot.path, ENCODING, boosting, threads=2),
            "xgboost task": lambda: train_xgboost(snapshot, TELEMETRY, boosting),
            "xgboost task, 1x2": lambda: train_xgboost(snapshot, TELEMETRY, boosting, spec_1x2),
            "xgboost task, 2x1": lambda: train_xgboost(snapshot, TELEMETRY, boosting, spec_2x1),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        # One untimed round first: the workers (and this process) import and initialize torch, xgboost and Conveyor.
        for repeat in range(-1, args.repeats):
            # Each round starts at another variant, so none always runs right after the same neighbour.
            names = list(runs)
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                seconds = _timed(runs[name])
                if repeat >= 0:
                    times[name].append(seconds)
        _, rows = fit_booster(snapshot.path, ENCODING, BoostingParams(rounds=1), threads=1)
    best = {name: min(seconds) for name, seconds in times.items()}
    samples = {"torch": rows * args.epochs, "xgboost": rows * args.rounds}
    print(
        f"{rows:,} training rows; torch {args.epochs} epochs, xgboost {args.rounds} rounds; "
        f"samples = rows x passes; best of {args.repeats}"
    )
    for name, seconds in best.items():
        family = name.split()[0]
        baseline = best[f"{family} direct"]
        rate = samples[family] / seconds
        print(f"{name:<18} {seconds:7.2f} s  {rate:>12,.0f} samples/s  ({seconds / baseline:.2f}x direct)")
    for family in ("torch", "xgboost"):
        direct = best[f"{family} direct"]
        # A fixed cost per task (task run, cache key, result record, artifacts): its share of a 60 s job is the goal.
        task_s, dask_s = best[f"{family} task"] - direct, best[f"{family} task, 1x2"] - direct
        speedup = best[f"{family} task, 1x2"] / best[f"{family} task, 2x1"]
        print(
            f"{family}: Prefect task overhead {task_s:+.2f} s, Prefect + Dask (1 worker x 2 threads) {dask_s:+.2f} s "
            f"per task = {task_s / 60:+.1%} and {dask_s / 60:+.1%} of a 60 s job (goal <= 5 %); "
            f"2 workers x 1 thread vs 1 worker x 2 threads: speed-up {speedup:.2f}x, efficiency {speedup / 2:.0%}"
        )


if __name__ == "__main__":
    main()
