"""Validation throughput: pandera vs Great Expectations on the same contract, and the whole validation step.

For each size the same parquet batch is read once and checked by both engines side by side in this process;
then the whole "Validate snapshot" work (read, both engines, statistics against a reference, Data Docs) runs on it.
Goals: pandera >= 5 M rows/s on the full schema; the whole step within 2x of pandera alone.
Run: .venv/bin/python -m benchmarks.bench_validation [--rows 1000000 10000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tasks.data import Snapshot
from tasks.expectations import run_suite
from tasks.files import sha256_file
from tasks.synthetic import generate_telemetry
from tasks.validation import check_batch, contract_violations, latest_allowed_timestamp

PANDERA_GOAL_ROWS_PER_S = 5e6
WHOLE_STEP_GOAL_RATIO = 2.0


def _seconds(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _batch(rows: int, folder: Path) -> Snapshot:
    path = folder / f"telemetry-{rows}.parquet"
    generate_telemetry(rows, dt.date(2026, 1, 1)).to_parquet(path, index=False)
    return Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    args = parser.parse_args()
    run_suite(generate_telemetry(96, dt.date(2026, 1, 1)), latest_allowed_timestamp())  # warm-up: GX imports
    print(f"{'rows':>11} {'pandera rows/s':>15} {'GX rows/s':>12} {'pandera/GX':>11} {'whole step s':>13} "
          f"{'whole/pandera':>14}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as tmp:
        for rows in args.rows:
            batch = _batch(rows, Path(tmp))
            frame = pd.read_parquet(batch.path)
            assert contract_violations(frame).empty, "the benchmark batch must be valid to check every row"
            pandera_s = _seconds(lambda f=frame: contract_violations(f))  # type: ignore[misc]
            gx_s = _seconds(lambda f=frame: run_suite(f, latest_allowed_timestamp()))  # type: ignore[misc]
            del frame
            docs = Path(tmp) / f"docs-{rows}"
            whole_s = _seconds(lambda b=batch, d=docs: check_batch(b, b, d))  # type: ignore[misc]
            print(
                f"{rows:>11,} {rows / pandera_s:>15,.0f} {rows / gx_s:>12,.0f} {gx_s / pandera_s:>10.2f}x "
                f"{whole_s:>13.2f} {whole_s / pandera_s:>13.2f}x",
                flush=True,
            )
            Path(batch.path).unlink()
    print(
        f"goals: pandera >= {PANDERA_GOAL_ROWS_PER_S:,.0f} rows/s; whole step <= {WHOLE_STEP_GOAL_RATIO:g}x pandera",
    )


if __name__ == "__main__":
    main()
