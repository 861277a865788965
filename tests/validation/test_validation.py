"""Validation lets clean snapshots through and stops broken ones naming what broke."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa_arrow
import pyarrow.parquet as pq
import pytest

from conveyor.data.snapshots import Snapshot, snapshot_partition
from conveyor.data.store import DataStore
from conveyor.data.synthetic import Corruption, generate_telemetry, write_partition
from conveyor.schema.telemetry import TELEMETRY
from conveyor.validation.reader import UnreadableBatchError, read_batch
from conveyor.validation.tasks import DataValidationError, require_valid, validate_snapshot

DAY = dt.date(2026, 4, 1)


def _snapshot_of(frame: pd.DataFrame, tmp_path: Path) -> Snapshot:
    return snapshot_partition.fn(
        write_partition(frame, tmp_path / "landing", DAY), DataStore(url=str(tmp_path / "store"))
    )


def _gate(snapshot: Snapshot) -> int:
    return require_valid(validate_snapshot(snapshot, TELEMETRY))


def test_clean_snapshot_passes_and_counts_its_rows(snapshot: Snapshot) -> None:
    report = validate_snapshot(snapshot, TELEMETRY)
    assert report.passed
    assert report.violations == []
    assert require_valid(report) == report.rows > 0


def test_corrupt_snapshot_fails_naming_checks_and_columns(tmp_path: Path) -> None:
    frame = generate_telemetry(2_000, DAY, corrupt=(Corruption.NULLS, Corruption.RANGE))
    with pytest.raises(DataValidationError) as failure:
        _gate(_snapshot_of(frame, tmp_path))
    message = str(failure.value)
    assert "not_nullable on temperature (40 rows)" in message
    assert "greater_than_or_equal_to(0) on rpm (40 rows)" in message


def test_duplicated_readings_are_refused(tmp_path: Path) -> None:
    frame = generate_telemetry(1_000, DAY)
    with pytest.raises(DataValidationError, match="machine_id"):
        _gate(_snapshot_of(pd.concat([frame, frame.head(5)]), tmp_path))


def test_missing_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="voltage"):
        _gate(_snapshot_of(generate_telemetry(1_000, DAY).drop(columns="voltage"), tmp_path))


def test_zero_rows_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no rows"):
        _gate(_snapshot_of(generate_telemetry(1_000, DAY).head(0), tmp_path))


def test_a_flipped_byte_in_a_checksummed_page_is_refused_not_read(tmp_path: Path) -> None:
    path = tmp_path / "telemetry-2026-03-05.parquet"
    table = pa_arrow.Table.from_pandas(generate_telemetry(2_000, dt.date(2026, 3, 5)), preserve_index=False)
    pq.write_table(table, path, write_page_checksum=True, compression="none")
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside a data page: without the check, a value silently changes
    path.write_bytes(bytes(data))
    with pytest.raises(UnreadableBatchError, match="CRC checksum verification failed"):
        read_batch(path)
