"""The landing zone: which partitions are complete (size stable across polls), announced, and safe to take.

A run never acts on a landed file's name after it has looked at it: it claims a private copy of the bytes (read once,
hashed while copied) and judges, snapshots or quarantines that copy. A producer may rename a corrected file into
place at any moment; only a file that still holds the bytes that were judged is ever removed from the landing folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from prefect import get_run_logger
from pydantic import BaseModel, Field, ValidationError

from conveyor.cache import uncached_task
from conveyor.data.snapshots import Snapshot
from conveyor.events import emit_data_landed
from conveyor.io.files import copy_hashing, fsync_folder, make_folders, sha256_file, write_text_atomically
from conveyor.settings import get_settings

# Private copies of the batches runs are judging; a hidden folder, so no scan of the landing folder sees them.
CLAIMS = ".claims"
_CHUNK = 1 << 20
# What fsspec backends report as "this object changed": local files give mtime, object stores an ETag or date.
_VERSION_KEYS = ("mtime", "LastModified", "last_modified", "ETag", "etag", "created")
_LOG = logging.getLogger(__name__)


class LandingError(ValueError):
    """A landed path is not a complete file inside the landing folder, so it is left where it is."""


class FileSignature(BaseModel):
    """What a poll sees of one file: equal signatures on consecutive polls mean nobody is writing it."""

    size: int
    version: str = Field("", description="mtime, ETag or date, as the filesystem reports it.")


class LandedPartition(BaseModel):
    """A complete partition that was announced with conveyor.data.landed."""

    url: str = Field(description="Where it landed: a local path, or a URL such as s3://bucket/key.")
    sha256: str
    signature: FileSignature
    dataset: str = Field("telemetry", description="The dataset spec whose partition names it matches.")


class WatcherState(BaseModel):
    """What the watcher announced already; kept on disk so a restart announces only what is new."""

    announced: dict[str, LandedPartition] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WatcherState:
        """The state saved at path; empty when nothing was saved yet, or when the file is damaged (kept aside)."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return cls()
        except ValidationError as error:
            # Starting empty only announces landed partitions again, and validating them again is harmless.
            kept = path.with_name(f"{path.name}.damaged-{time.time_ns()}")
            path.replace(kept)
            problem = error.errors()[0]["msg"]
            _LOG.warning("Watcher state %s is damaged (%s); kept it as %s and started empty.", path, problem, kept.name)
            return cls()

    def save(self, path: Path) -> None:
        """Replace the saved state in one step (a crash leaves the old state, never half a file)."""
        write_text_atomically(path, json.dumps(self.model_dump(), indent=2, sort_keys=True))


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A filesystem path as a URL the same filesystem opens again (local files stay plain paths)."""
    return path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)


def _signature(info: dict[str, Any]) -> FileSignature:
    version = next((str(info[key]) for key in _VERSION_KEYS if info.get(key) is not None), "")
    return FileSignature(size=int(info.get("size") or 0), version=version)


def scan_landing(url: str, pattern: str) -> dict[str, FileSignature]:
    """Every file matching a dataset's partition glob under a local folder or object-store URL, with its signature."""
    fs, root = url_to_fs(url)
    if not fs.exists(root):
        return {}
    found = fs.glob(f"{root.rstrip('/')}/{pattern}", detail=True)
    return {_url(fs, path): _signature(info) for path, info in found.items() if info.get("type") != "directory"}


def complete_partitions(
    previous: dict[str, FileSignature], current: dict[str, FileSignature], state: WatcherState
) -> list[str]:
    """Files not yet announced whose non-zero size and version did not change since the previous poll."""
    return sorted(
        url
        for url, signature in current.items()
        if signature.size > 0
        and previous.get(url) == signature
        and (url not in state.announced or state.announced[url].signature != signature)
    )


def sha256_url(url: str) -> str:
    """Hex SHA-256 of a local file's or an object's bytes, streamed."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@uncached_task("Announce landed partition", why="emits events")
def announce_partition(url: str, signature: FileSignature, dataset: str) -> LandedPartition:
    """Hash a complete partition and emit conveyor.data.landed about it, naming its dataset."""
    landed = LandedPartition(url=url, sha256=sha256_url(url), signature=signature, dataset=dataset)
    emit_data_landed(landed.url, landed.sha256, dataset)
    return landed


@contextmanager
def claims_folder(landing_dir: Path) -> Iterator[Path]:
    """Where one run keeps its private copies of the batches it judges (made on first use); removed when it ends."""
    folder = landing_dir / CLAIMS / uuid.uuid4().hex
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@uncached_task("Check landed file", why="checks the landing folder as it is now")
def inspect_landed_file(path: Path, landing_dir: Path | None, claims: Path) -> Snapshot:
    """Refuse a path outside the landing folder, a non-file or a growing file; else claim a private copy of it."""
    settle_s = get_settings().validation.landing_settle_s
    resolved = path.resolve()
    # landing_dir None: a file given by path, checked wherever it lies.
    if landing_dir is not None and not resolved.is_relative_to(landing := landing_dir.resolve()):
        raise LandingError(f"{path} is outside the landing folder {landing}; land it there first.")
    if not resolved.is_file():
        raise LandingError(f"{path} is not a regular file; a batch is one parquet file.")
    before = resolved.stat()
    if time.time() - before.st_mtime < settle_s:
        # Recently modified: watch it for a moment, and leave it alone if it is still growing.
        time.sleep(settle_s)
        after = resolved.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise LandingError(
                f"{path.name} is still being written ({before.st_size} then {after.st_size} bytes within "
                f"{settle_s:g} s); it is left in place, validate it once it is complete."
            )
    # Judged, snapshotted and quarantined from here on: a file renamed over the landed name changes none of it.
    claimed = make_folders(claims) / resolved.name
    digest = copy_hashing(resolved, claimed)
    return Snapshot(sha256=digest, path=str(claimed), source=str(resolved), size_bytes=claimed.stat().st_size)


def _put_back(taken: Path, landed: Path) -> Path:
    """Return a file taken by mistake to its name, or beside it when a newer file took the name meanwhile."""
    name = landed
    while True:
        try:
            os.link(taken, name)  # unlike a rename, a link never replaces the file that holds the name
            break
        except FileExistsError:
            name = landed.with_stem(f"{landed.stem}.{uuid.uuid4().hex[:8]}")
    fsync_folder(landed.parent)  # the file's visible name is on disk before its hidden one goes
    taken.unlink()
    return name


@uncached_task("Clear landed file", why="removes a quarantined batch from the landing folder")
def clear_landed_file(batch: Snapshot) -> bool:
    """Remove the landed file a quarantined batch was claimed from, only if it still holds the bytes judged."""
    landed = Path(batch.source)
    taken = landed.with_name(f".{landed.name}.{uuid.uuid4().hex}.clearing")
    try:
        # One atomic step takes whatever holds the name now; nothing renamed into place later can be removed.
        landed.rename(taken)
    except FileNotFoundError:
        return False  # another run quarantined these bytes and cleared them first
    if taken.is_file() and sha256_file(taken) == batch.sha256:
        taken.unlink()
        return True
    kept = _put_back(taken, landed)
    get_run_logger().warning(
        "%s was replaced after it was validated; the new file stays in the landing folder as %s, to be validated on "
        "its own.",
        landed,
        kept.name,
    )
    return False
