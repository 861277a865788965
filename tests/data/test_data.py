"""Ingest finds the right partition and snapshots it by content, not by name."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from conveyor.data.snapshots import PartitionNotFoundError, find_partition, snapshot_partition, split_holdout
from conveyor.data.store import DataStore
from conveyor.data.synthetic import generate_telemetry, write_partition
from conveyor.schema.telemetry import TELEMETRY


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    for day in (dt.date(2026, 2, 1), dt.date(2026, 2, 2)):
        write_partition(generate_telemetry(500, day), folder, day)
    return folder


def test_newest_partition_is_the_default(landing: Path) -> None:
    assert find_partition(landing, TELEMETRY).name == "telemetry-2026-02-02.parquet"


def test_partition_by_day_or_by_name(landing: Path) -> None:
    assert find_partition(landing, TELEMETRY, day=dt.date(2026, 2, 1)).name == "telemetry-2026-02-01.parquet"
    assert (
        find_partition(landing, TELEMETRY, partition="telemetry-2026-02-01.parquet")
        == landing / "telemetry-2026-02-01.parquet"
    )


def test_missing_day_names_the_path_it_looked_for(landing: Path) -> None:
    with pytest.raises(PartitionNotFoundError, match=r"telemetry-2020-01-01\.parquet"):
        find_partition.fn(landing, TELEMETRY, day=dt.date(2020, 1, 1))


def test_empty_landing_folder_says_how_to_get_data(tmp_path: Path) -> None:
    with pytest.raises(PartitionNotFoundError, match="conveyor generate"):
        find_partition.fn(tmp_path / "nothing-here", TELEMETRY)


def test_same_bytes_under_another_name_share_one_snapshot(landing: Path, tmp_path: Path) -> None:
    original = landing / "telemetry-2026-02-01.parquet"
    copy = tmp_path / "elsewhere" / "renamed.parquet"
    copy.parent.mkdir()
    shutil.copyfile(original, copy)
    store = DataStore(url=str(tmp_path / "store"))
    first = snapshot_partition.fn(original, store)
    second = snapshot_partition.fn(copy, store)
    assert first.sha256 == second.sha256
    assert first.path == second.path
    assert len(list((tmp_path / "store").rglob("*.parquet"))) == 1


def test_one_changed_byte_makes_a_new_snapshot(landing: Path, tmp_path: Path) -> None:
    original = landing / "telemetry-2026-02-01.parquet"
    changed = tmp_path / "changed.parquet"
    data = bytearray(original.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    store = DataStore(url=str(tmp_path / "s"))
    assert snapshot_partition.fn(original, store).sha256 != snapshot_partition.fn(changed, store).sha256


def test_holdout_keeps_each_machine_on_one_side() -> None:
    frame = generate_telemetry(20_000, dt.date(2026, 2, 1))
    train, holdout = split_holdout(frame, 0.2, TELEMETRY.entity)
    assert set(train["machine_id"]).isdisjoint(holdout["machine_id"])
    assert len(train) + len(holdout) == len(frame)
    assert 0.1 < len(holdout) / len(frame) < 0.3


def test_too_few_machines_to_hold_out_is_explained() -> None:
    with pytest.raises(ValueError, match="Cannot hold out"):
        split_holdout(generate_telemetry(50, dt.date(2026, 2, 1)), 0.2, TELEMETRY.entity)
