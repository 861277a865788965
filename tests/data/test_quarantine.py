"""The quarantine keeps a copy of the bytes that failed; only a landed file still holding them leaves the landing."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import conveyor.data.landing as landing
from conveyor.data.landing import claims_folder, clear_landed_file, inspect_landed_file
from conveyor.data.quarantine import quarantine_batch
from conveyor.data.snapshots import Snapshot, landed_partitions, snapshot_key
from conveyor.data.store import DataStore
from conveyor.data.synthetic import generate_telemetry, write_partition
from conveyor.io.files import sha256_file
from conveyor.schema.telemetry import TELEMETRY

DAY = dt.date(2026, 4, 4)
AN_HOUR_AGO_NS = 3_600_000_000_000


@pytest.fixture
def landing_dir(tmp_path: Path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def claims(landing_dir: Path) -> Iterator[Path]:
    with claims_folder(landing_dir) as folder:
        yield folder


def _land(folder: Path, day: dt.date = DAY, seed: int = 7) -> Path:
    """A complete partition in the landing folder, written an hour ago."""
    path = write_partition(generate_telemetry(300, day, seed), folder, day)
    landed_ns = path.stat().st_mtime_ns - AN_HOUR_AGO_NS
    os.utime(path, ns=(landed_ns, landed_ns))
    return path


def _correction(tmp_path: Path) -> Path:
    """The producer's corrected file for the same day, written beside the landing folder, ready to rename in."""
    return write_partition(generate_telemetry(300, DAY, seed=8), tmp_path / "producer", DAY)


def _claim(path: Path, landing_dir: Path, claims: Path) -> Snapshot:
    return inspect_landed_file.fn(path, landing_dir, claims)


def test_a_claim_is_a_private_copy_named_by_the_bytes_it_holds(landing_dir: Path, claims: Path) -> None:
    landed = _land(landing_dir)
    batch = _claim(landed, landing_dir, claims)
    assert Path(batch.path).parent == claims
    assert sha256_file(Path(batch.path)) == batch.sha256 == sha256_file(landed)
    assert batch.source == str(landed)
    assert landed_partitions(landing_dir, TELEMETRY) == [landed]  # the claims folder is hidden from every scan


def test_a_batch_another_run_quarantined_meanwhile_is_not_an_error(
    tmp_path: Path, landing_dir: Path, claims: Path
) -> None:
    landed = _land(landing_dir)
    # The watcher's validate and a refit's validate judged the same file; the second finds it quarantined and cleared.
    first, second = _claim(landed, landing_dir, claims / "run-1"), _claim(landed, landing_dir, claims / "run-2")
    folder = quarantine_batch(first, tmp_path / "quarantine")
    assert clear_landed_file(first)
    assert quarantine_batch(second, tmp_path / "quarantine") == folder
    assert not clear_landed_file(second)
    assert [sha256_file(p) for p in folder.glob("*.parquet")] == [first.sha256]
    assert landed_partitions(landing_dir, TELEMETRY) == []


def test_the_same_bytes_landing_again_are_kept_once(tmp_path: Path, landing_dir: Path, claims: Path) -> None:
    landed = _land(landing_dir)
    copy = Path(shutil.copyfile(landed, tmp_path / "copy.parquet"))
    folder = quarantine_batch(batch := _claim(landed, landing_dir, claims / "run-1"), tmp_path / "quarantine")
    assert clear_landed_file(batch)
    shutil.copyfile(copy, landed)  # it lands again
    again = _claim(landed, landing_dir, claims / "run-2")
    assert quarantine_batch(again, tmp_path / "quarantine") == folder
    assert clear_landed_file(again)
    assert len(list(folder.glob("*.parquet"))) == 1
    assert not landed.exists()


def test_a_corrected_file_renamed_into_place_before_the_landing_is_cleared_stays(
    tmp_path: Path, landing_dir: Path, claims: Path
) -> None:
    landed = _land(landing_dir)
    batch = _claim(landed, landing_dir, claims)
    folder = quarantine_batch(batch, tmp_path / "quarantine")
    corrected = _correction(tmp_path)
    fixed = sha256_file(corrected)
    corrected.replace(landed)  # the producer's fix, after the verdict and before the landing folder is cleared
    assert not clear_landed_file(batch)
    assert sha256_file(landed) == fixed
    assert sha256_file(folder / landed.name) == batch.sha256
    assert landed_partitions(landing_dir, TELEMETRY) == [landed]  # and nothing hidden left behind
    assert [p.name for p in landing_dir.iterdir() if p.name != ".claims"] == [landed.name]


def test_a_file_renamed_into_place_while_the_landing_is_cleared_is_kept_beside_the_newest(
    tmp_path: Path, landing_dir: Path, claims: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed = _land(landing_dir)
    batch = _claim(landed, landing_dir, claims)
    quarantine_batch(batch, tmp_path / "quarantine")
    corrected = _correction(tmp_path)
    corrected.replace(landed)
    fixed = sha256_file(landed)
    newest = write_partition(generate_telemetry(300, DAY, seed=9), tmp_path / "again", DAY)
    newest_sha = sha256_file(newest)

    def check_while_the_newest_lands(path: Path) -> str:
        # The corrected file was taken to be checked; at that very moment the producer renames an even newer one in.
        newest.replace(landed)
        return sha256_file(path)

    monkeypatch.setattr(landing, "sha256_file", check_while_the_newest_lands)
    assert not clear_landed_file(batch)
    kept = {sha256_file(p): p.name for p in landed_partitions(landing_dir, TELEMETRY)}
    assert kept[newest_sha] == landed.name  # the name holds the newest file
    assert kept[fixed].startswith(f"{landed.stem}.")  # the corrected one beside it, to be validated on its own
    assert len(kept) == 2


def test_quarantining_a_stored_snapshot_copies_it_and_leaves_it_in_the_store(tmp_path: Path) -> None:
    store = DataStore(url=str(tmp_path / "data"))
    source = write_partition(generate_telemetry(300, DAY), tmp_path / "made", DAY)
    digest = sha256_file(source)
    stored = store.keep_file(source, snapshot_key(digest))
    batch = Snapshot(sha256=digest, path=str(stored), source=store.url_of(snapshot_key(digest)), size_bytes=1)
    folder = quarantine_batch(batch, tmp_path / "quarantine")
    assert sha256_file(stored) == digest  # still in the data store, byte for byte
    assert sha256_file(folder / stored.name) == digest
