"""Ingest: find a landed partition, snapshot it content-addressed, read it back, split it."""

from __future__ import annotations

import datetime as dt
import re
import zlib
from pathlib import Path
from typing import Annotated

import pandas as pd
from pydantic import BaseModel, Field

from conveyor.cache import Content, Descriptive, cached_task, uncached_task
from conveyor.data.store import DataStore
from conveyor.io.files import sha256_file
from conveyor.schema.spec import DatasetSpec

_SHA256 = re.compile(r"[0-9a-f]{64}")


class PartitionNotFoundError(FileNotFoundError):
    """No landed partition matches what was asked for."""


class Snapshot(BaseModel):
    """An immutable, content-addressed copy of one landed partition."""

    sha256: str = Field(description="SHA-256 of the partition's bytes; the snapshot's identity.")
    path: Annotated[str, Content] = Field(
        description="Where this host reads it: in the data store, or the local copy of an object store's snapshot."
    )
    source: Annotated[str, Descriptive] = Field(description="The landed file it was first taken from.")
    size_bytes: int


def landed_partitions(landing_dir: Path, spec: DatasetSpec) -> list[Path]:
    """Every landed partition of a dataset, oldest first (names carry the day)."""
    return sorted(landing_dir.glob(spec.partition_glob)) if landing_dir.is_dir() else []


def newest_partition(landing_dir: Path, spec: DatasetSpec) -> Path | None:
    """The dataset's newest landed partition, or None when none has landed."""
    landed = landed_partitions(landing_dir, spec)
    return landed[-1] if landed else None


@uncached_task("Find landed partition", why="looks up the landing folder")
def find_partition(
    landing_dir: Path, spec: DatasetSpec, day: dt.date | None = None, partition: str | None = None
) -> Path:
    """Locate the partition to train on: a named file, a day's file, or the dataset's newest one."""
    if partition:
        path = Path(partition)
        path = path if path.is_absolute() else landing_dir / path
    elif day:
        path = landing_dir / spec.partition_name(day)
    else:
        newest = newest_partition(landing_dir, spec)
        if newest is None:
            raise PartitionNotFoundError(
                f"No partition has landed in {landing_dir} yet; run `conveyor generate` first."
            )
        return newest
    if not path.is_file():
        raise PartitionNotFoundError(f"No landed partition at {path}.")
    return path


@cached_task("Snapshot partition")
def snapshot_partition(partition: Path, data_store: DataStore) -> Snapshot:
    """Copy a partition into the data store under its content hash; identical bytes share one snapshot."""
    digest = sha256_file(partition)
    target = data_store.keep_file(partition, snapshot_key(digest))
    return Snapshot(sha256=digest, path=str(target), source=str(partition), size_bytes=target.stat().st_size)


@uncached_task("Find newest landed partition", why="looks up the landing folder")
def find_newest_partition(landing_dir: Path, spec: DatasetSpec) -> Path | None:
    """The dataset's newest landed partition (production's latest data), or None when none has landed."""
    return newest_partition(landing_dir, spec)


def snapshot_key(sha256: str) -> str:
    """Where the snapshot of these bytes lives in a data store, relative to its root."""
    return f"snapshots/{sha256[:2]}/{sha256}.parquet"


def stored_snapshot(data_store: DataStore, sha256: str) -> Snapshot | None:
    """The snapshot of that content hash, readable on this host; None when the store does not hold it."""
    path = data_store.fetch_file(snapshot_key(sha256), sha256)
    if path is None:
        return None
    return Snapshot(
        sha256=sha256, path=str(path), source=data_store.url_of(snapshot_key(sha256)), size_bytes=path.stat().st_size
    )


@uncached_task("Find snapshot", why="looks up the data store")
def find_snapshot(data_store: DataStore, sha256: str) -> Snapshot:
    """Look a snapshot up by its content hash, e.g. one announced by a conveyor.validation.passed event."""
    if not _SHA256.fullmatch(sha256):
        raise ValueError(f"A snapshot is named by the 64 hex digits of its SHA-256; got {sha256!r}.")
    found = stored_snapshot(data_store, sha256)
    if found is None:
        raise PartitionNotFoundError(f"No snapshot {sha256[:12]} in {data_store.url}.")
    return found


def read_snapshot(snapshot: Snapshot) -> pd.DataFrame:
    """Read a snapshot's rows."""
    return pd.read_parquet(snapshot.path)


def split_holdout(frame: pd.DataFrame, holdout_fraction: float, entity: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by entity (a machine, a customer) so that none is in both parts: its rows share one label."""
    bucket = frame[entity].astype(str).map(lambda m: zlib.crc32(m.encode()) % 1000)
    in_holdout = bucket < int(holdout_fraction * 1000)
    if in_holdout.all() or not in_holdout.any():
        entities = frame[entity].nunique()
        raise ValueError(
            f"Cannot hold out {holdout_fraction:.0%} of {entities} {entity} values and still train on the rest; "
            "land more of them or change holdout_fraction."
        )
    return frame[~in_holdout].reset_index(drop=True), frame[in_holdout].reset_index(drop=True)
