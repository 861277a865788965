"""The data store: content-addressed snapshots and validation reports, in a folder or at any fsspec URL.

A local store is read in place. An object store (``s3://bucket/prefix``) is written with single PUTs, which it makes
visible whole or never, and read on each host through a local copy that is checked against the snapshot's SHA-256
once, when it is fetched. Every reader (pandas, arrow, the Dask workers of this host) then reads a plain file, and
the task cache hashes that file like any other.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

from fsspec.core import url_to_fs

from conveyor.blocks import ConveyorStores
from conveyor.data.objects import CorruptStoreObjectError, StoreLocation, StoreUnavailableError
from conveyor.io.files import write_atomically
from conveyor.settings import get_settings

__all__ = ["CorruptStoreObjectError", "DataStore", "DataStoreUnavailableError"]

# The data store's name for the error every store raises when its object store cannot be used.
DataStoreUnavailableError = StoreUnavailableError


class DataStore(StoreLocation):
    """Where snapshots and reports are kept: a folder, or an object store read through local copies."""

    kind: ClassVar[str] = "data store"

    @classmethod
    def of(cls, stores: ConveyorStores) -> DataStore:
        """The data store a stores block configures."""
        return cls(url=stores.data_store, credentials=stores.data_store_credentials)

    def local_path(self, relative: str) -> Path:
        """Where this host reads ``relative`` from: the store itself when local, else its local copy."""
        if self.is_local:
            return Path(url_to_fs(self.url)[1]) / relative
        return get_settings().store_copies_dir / relative

    def keep_file(self, source: Path, relative: str) -> Path:
        """Keep a copy of ``source`` as ``relative`` unless the store holds it already; returns the local path."""
        local = self.local_path(relative)
        if not local.is_file():
            write_atomically(local, lambda tmp: shutil.copyfile(source, tmp))
        if not self.is_local:
            with self.remote() as (fs, root):
                if not fs.exists(f"{root}/{relative}"):
                    fs.put_file(str(local), f"{root}/{relative}")  # an object appears whole when its upload completes
        return local

    def fetch_file(self, relative: str, sha256: str) -> Path | None:
        """The local path of a kept file, fetched first if only the store holds it; None when the store lacks it."""
        local = self.local_path(relative)
        if local.is_file():
            return local
        return None if self.is_local else self.download(relative, local, sha256)

    def keep_folder(self, folder: Path, relative: str) -> str:
        """Copy a folder written on this host into the store as ``relative`` (nothing to do when local); its URL."""
        if not self.is_local:
            with self.remote() as (fs, root):
                for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                    fs.put_file(str(file), f"{root}/{relative}/{file.relative_to(folder).as_posix()}")
        return self.url_of(relative)
