"""A data store on object storage: snapshots are one object per content hash, read through verified local copies."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from conveyor.data.snapshots import find_snapshot, snapshot_key, snapshot_partition
from conveyor.data.store import CorruptStoreObjectError, DataStore, DataStoreUnavailableError
from conveyor.data.synthetic import generate_telemetry, write_partition
from tests.fixtures.object_store import ObjectStore

DAY = dt.date(2026, 5, 3)


@pytest.fixture
def on_s3(object_store: ObjectStore) -> DataStore:
    return DataStore(url=f"s3://{object_store.bucket}/conveyor", credentials=object_store.credentials)


@pytest.fixture
def partition(tmp_path: Path) -> Path:
    return write_partition(generate_telemetry(500, DAY), tmp_path / "landing", DAY)


def _move_to_another_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """From here on, act as a host that has never read the store: its own, empty cache folder."""
    cache = tmp_path / "other-host-cache"
    monkeypatch.setenv("CONVEYOR_CACHE_DIR", str(cache))
    return cache


def _keys(object_store: ObjectStore) -> list[str]:
    listing = object_store.client().list_objects_v2(Bucket=object_store.bucket)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_a_snapshot_is_one_object_named_by_its_content_hash(
    partition: Path, on_s3: DataStore, object_store: ObjectStore, tmp_path: Path
) -> None:
    renamed = tmp_path / "elsewhere" / "renamed.parquet"
    renamed.parent.mkdir()
    shutil.copyfile(partition, renamed)
    first = snapshot_partition.fn(partition, on_s3)
    second = snapshot_partition.fn(renamed, on_s3)
    assert first.sha256 == second.sha256
    assert _keys(object_store) == [f"conveyor/{snapshot_key(first.sha256)}"]
    stored = object_store.client().get_object(Bucket=object_store.bucket, Key=_keys(object_store)[0])
    assert stored["Body"].read() == partition.read_bytes()


def test_another_host_reads_a_snapshot_through_a_local_copy_of_the_same_bytes(
    partition: Path, on_s3: DataStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kept = snapshot_partition.fn(partition, on_s3)
    other_host = _move_to_another_host(monkeypatch, tmp_path)
    found = find_snapshot.fn(on_s3, kept.sha256)
    assert Path(found.path).is_relative_to(other_host)
    assert Path(found.path).read_bytes() == partition.read_bytes()
    assert found.source == on_s3.url_of(snapshot_key(kept.sha256))


def test_an_object_overwritten_outside_conveyor_is_refused_and_not_copied(
    partition: Path, on_s3: DataStore, object_store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kept = snapshot_partition.fn(partition, on_s3)
    _move_to_another_host(monkeypatch, tmp_path)
    key = f"conveyor/{snapshot_key(kept.sha256)}"
    object_store.client().put_object(Bucket=object_store.bucket, Key=key, Body=b"not the landed bytes")
    with pytest.raises(CorruptStoreObjectError, match="overwritten outside Conveyor"):
        find_snapshot.fn(on_s3, kept.sha256)
    assert not on_s3.local_path(snapshot_key(kept.sha256)).exists()


def test_a_snapshot_the_store_lacks_is_reported_missing(on_s3: DataStore) -> None:
    with pytest.raises(FileNotFoundError, match=f"No snapshot {'ab' * 6} in s3://"):
        find_snapshot.fn(on_s3, "ab" * 32)


def test_an_unreachable_store_fails_in_one_sentence_that_names_it_and_not_the_secret(
    partition: Path, object_store: ObjectStore
) -> None:
    closed = object_store.credentials.model_copy(update={"endpoint_url": "http://127.0.0.1:9"})
    unreachable = DataStore(url=f"s3://{object_store.bucket}/conveyor", credentials=closed)
    with pytest.raises(DataStoreUnavailableError, match=f"The data store {unreachable.url} could not be used") as error:
        snapshot_partition.fn(partition, unreachable)
    assert object_store.credentials.secret_access_key.get_secret_value() not in str(error.value)
