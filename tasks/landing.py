"""The landing zone: which partitions are complete (size stable across polls) and which were already announced."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from pydantic import BaseModel, Field

from tasks.caching import uncached_task
from tasks.events import emit_data_landed
from tasks.files import write_text_atomically
from tasks.synthetic import PARTITION_PREFIX

PARTITION_GLOB = f"{PARTITION_PREFIX}*.parquet"
_CHUNK = 1 << 20
# What fsspec backends report as "this object changed": local files give mtime, object stores an ETag or date.
_VERSION_KEYS = ("mtime", "LastModified", "last_modified", "ETag", "etag", "created")


class FileSignature(BaseModel):
    """What a poll sees of one file: equal signatures on consecutive polls mean nobody is writing it."""

    size: int
    version: str = Field("", description="mtime, ETag or date, as the filesystem reports it.")


class LandedPartition(BaseModel):
    """A complete partition that was announced with conveyor.data.landed."""

    url: str = Field(description="Where it landed: a local path, or a URL such as s3://bucket/key.")
    sha256: str
    signature: FileSignature


class WatcherState(BaseModel):
    """What the watcher announced already; kept on disk so a restart announces only what is new."""

    announced: dict[str, LandedPartition] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> WatcherState:
        """The state saved at path, or an empty one when nothing was saved yet."""
        return cls.model_validate_json(path.read_text()) if path.is_file() else cls()

    def save(self, path: Path) -> None:
        """Replace the saved state in one step (a crash leaves the old state, never half a file)."""
        write_text_atomically(path, json.dumps(self.model_dump(), indent=2, sort_keys=True))


def _url(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """A filesystem path as a URL the same filesystem opens again (local files stay plain paths)."""
    return path if fs.protocol in ("file", ("file", "local")) else fs.unstrip_protocol(path)


def _signature(info: dict[str, Any]) -> FileSignature:
    version = next((str(info[key]) for key in _VERSION_KEYS if info.get(key) is not None), "")
    return FileSignature(size=int(info.get("size") or 0), version=version)


def scan_landing(url: str, pattern: str = PARTITION_GLOB) -> dict[str, FileSignature]:
    """Every partition file under a local folder or object-store URL, with its current signature."""
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
def announce_partition(url: str, signature: FileSignature) -> LandedPartition:
    """Hash a complete partition and emit conveyor.data.landed about it."""
    landed = LandedPartition(url=url, sha256=sha256_url(url), signature=signature)
    emit_data_landed(landed.url, landed.sha256)
    return landed
