"""Validation throughput: pandera (pandas and polars backends) vs Great Expectations, and the whole validation step.

For each size one parquet batch is read once (arrow, then pandas and polars views of it) and checked side by side in
this process, best of --repeat interleaved runs, by pandera's pandas backend (the baseline), pandera's polars backend
(what the task uses) and Great Expectations, all on the same contract, and by the whole "Validate snapshot" work
(read, both engines, statistics against a reference whose profile is kept beside it, Data Docs). "whole, 1st run" is
the first run against a new reference, which also computes that profile.
Goals: pandera >= 5 M rows/s on the full schema; the whole step within 2x of pandera. The machine's load average is
printed with the figures: on a shared machine they move with it. Figures measured here are in README.md.
Run: .venv/bin/python -m benchmarks.bench_validation [--rows 1000000 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from conveyor.data.snapshots import Snapshot
from conveyor.data.synthetic import generate_telemetry
from conveyor.io.files import sha256_file
from conveyor.schema.telemetry import TELEMETRY
from conveyor.validation.check import check_batch
from conveyor.validation.contract import contract_violations, latest_allowed_timestamp
from conveyor.validation.expectations import run_suite
from conveyor.validation.reader import as_polars, read_batch
from conveyor.validation.statistics import profile_path

PANDERA_GOAL_ROWS_PER_S = 5e6
WHOLE_STEP_GOAL_RATIO = 2.0
_COLUMNS = ("pandera pandas", "pandera polars", "Great Expectations", "whole step", "whole, 1st run")


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _load(averages: tuple[float, float, float]) -> str:
    return ", ".join(f"{a:.2f}" for a in averages)


def _batch(rows: int, folder: Path, day: dt.date) -> Snapshot:
    path = folder / f"telemetry-{rows}-{day}.parquet"
    generate_telemetry(rows, day).to_parquet(path, index=False)
    return Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)


def _measure(rows: int, folder: Path, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` seconds of each engine and of the whole step on one batch, interleaved, as load varies."""
    print(f"measuring {rows:,} rows, best of {repeat} ...", flush=True)
    batch = _batch(rows, folder, dt.date(2026, 1, 2))
    reference = _batch(rows, folder, dt.date(2026, 1, 1))
    table = read_batch(Path(batch.path))
    frame, rows_polars = table.to_pandas(), as_polars(table)
    assert contract_violations(rows_polars, TELEMETRY).empty, "the benchmark batch must be valid to check every row"
    seconds = {"whole, 1st run": _seconds(lambda: check_batch(batch, TELEMETRY, reference, folder / "docs-first"))}
    assert profile_path(reference).is_file(), "the first run keeps the reference's profile"
    calls: dict[str, Callable[[], object]] = {
        "pandera pandas": lambda: contract_violations(frame, TELEMETRY),
        "pandera polars": lambda: contract_violations(rows_polars, TELEMETRY),
        "Great Expectations": lambda: run_suite(frame, TELEMETRY, latest_allowed_timestamp()),
        "whole step": lambda: check_batch(batch, TELEMETRY, reference, folder / "docs"),
    }
    for _ in range(repeat):
        for name, call in calls.items():
            seconds[name] = min(seconds.get(name, float("inf")), _seconds(call))
    for snapshot in (batch, reference):
        Path(snapshot.path).unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many interleaved runs")
    args = parser.parse_args()
    run_suite(generate_telemetry(96, dt.date(2026, 1, 1)), TELEMETRY, latest_allowed_timestamp())  # warm-up: GX
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        results = {rows: _measure(rows, Path(tmp), args.repeat) for rows in args.rows}
    # On a shared machine the figures move with what else runs: print the load they were taken under.
    print(f"load average (1, 5, 15 min): {_load(load_before)} before, {_load(os.getloadavg())} after")
    print(f"{'rows/s':<20}" + "".join(f"{rows:>16,}" for rows in results))
    for column in _COLUMNS:
        print(f"{column:<20}" + "".join(f"{rows / s[column]:>16,.0f}" for rows, s in results.items()))
    print(f"{'ratio to pandera polars (seconds)':<20}")
    for column in _COLUMNS:
        print(f"  {column:<18}" + "".join(f"{s[column] / s['pandera polars']:>15.2f}x" for s in results.values()))
    print(
        f"goals: pandera >= {PANDERA_GOAL_ROWS_PER_S:,.0f} rows/s; "
        f"whole step <= {WHOLE_STEP_GOAL_RATIO:g}x pandera (seconds)"
    )


if __name__ == "__main__":
    main()
