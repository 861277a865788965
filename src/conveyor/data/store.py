"""The data store: content-addressed snapshots and validation reports, in a folder or at any fsspec URL.

A local store is read in place. An object store (``s3://bucket/prefix``) is written with single PUTs, which it makes
visible whole or never, and read on each host through a local copy that is checked against the snapshot's SHA-256
once, when it is fetched. Every reader (pandas, arrow, the Dask workers of this host) then reads a plain file, and
the task cache hashes that file like any other.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol
from pydantic import BaseModel, Field

from conveyor.blocks import ConveyorStores, S3Credentials
from conveyor.cache import Descriptive
from conveyor.io.files import sha256_file, write_atomically
from conveyor.settings import get_settings


class CorruptStoreObjectError(ValueError):
    """An object in the data store does not hold the bytes its content-addressed name promises."""


class DataStoreUnavailableError(OSError):
    """The object store could not be reached or refused the request."""


class DataStore(BaseModel):
    """Where snapshots and reports are kept: a folder, or an object store read through local copies."""

    url: str = Field(description="A folder, or an fsspec URL such as s3://bucket/prefix.")
    # Who may read the store is no part of what a task computes, so credentials never enter a cache key.
    credentials: Annotated[S3Credentials | None, Descriptive] = Field(
        None, description="Credentials of an s3:// store; empty: the environment's."
    )

    @classmethod
    def of(cls, stores: ConveyorStores) -> DataStore:
        """The data store a stores block configures."""
        return cls(url=stores.data_store, credentials=stores.data_store_credentials)

    @contextmanager
    def _remote(self) -> Iterator[tuple[AbstractFileSystem, str]]:
        """The object store's filesystem and root; a failure to use it becomes one sentence naming the store."""
        options = self.credentials.storage_options() if self.credentials else {}
        try:
            yield url_to_fs(self.url, **options)
        except CorruptStoreObjectError:
            raise
        except Exception as error:  # each fsspec backend raises its own client library's errors
            raise DataStoreUnavailableError(f"The data store {self.url} could not be used: {error}") from error

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder of this host (read in place) rather than an object store."""
        return get_protocol(self.url) in LocalFileSystem.protocol

    def local_path(self, relative: str) -> Path:
        """Where this host reads ``relative`` from: the store itself when local, else its local copy."""
        if self.is_local:
            return Path(url_to_fs(self.url)[1]) / relative
        return get_settings().store_copies_dir / relative

    def url_of(self, relative: str) -> str:
        """The address of ``relative`` in the store."""
        return f"{self.url.rstrip('/')}/{relative}"

    def keep_file(self, source: Path, relative: str) -> Path:
        """Keep a copy of ``source`` as ``relative`` unless the store holds it already; returns the local path."""
        local = self.local_path(relative)
        if not local.is_file():
            write_atomically(local, lambda tmp: shutil.copyfile(source, tmp))
        if not self.is_local:
            with self._remote() as (fs, root):
                if not fs.exists(f"{root}/{relative}"):
                    fs.put_file(str(local), f"{root}/{relative}")  # an object appears whole when its upload completes
        return local

    def fetch_file(self, relative: str, sha256: str) -> Path | None:
        """The local path of a kept file, fetched first if only the store holds it; None when the store lacks it."""
        local = self.local_path(relative)
        if local.is_file():
            return local
        if self.is_local:
            return None
        with self._remote() as (fs, root):
            remote = f"{root}/{relative}"
            if not fs.exists(remote):
                return None

            def download(tmp: Path) -> None:
                fs.get_file(remote, str(tmp))
                if (found := sha256_file(tmp)) != sha256:
                    raise CorruptStoreObjectError(
                        f"{self.url_of(relative)} holds bytes with SHA-256 {found[:12]}, not {sha256[:12]}; "
                        "it was overwritten outside Conveyor and is not used."
                    )

            return write_atomically(local, download)

    def keep_folder(self, folder: Path, relative: str) -> str:
        """Copy a folder written on this host into the store as ``relative`` (nothing to do when local); its URL."""
        if not self.is_local:
            with self._remote() as (fs, root):
                for file in sorted(p for p in folder.rglob("*") if p.is_file()):
                    fs.put_file(str(file), f"{root}/{relative}/{file.relative_to(folder).as_posix()}")
        return self.url_of(relative)
