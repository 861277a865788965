"""Stores kept in a folder or at an fsspec URL (s3://): what the data store and the model store share.

An object store is reached through fsspec with the store's credentials; any failure to use it is one sentence naming
the store (never its secret). Hosts read its objects through local copies that are checked against the SHA-256 the
caller expects before anything reads them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, ClassVar

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from fsspec.utils import get_protocol
from pydantic import BaseModel, Field

from conveyor.blocks import S3Credentials
from conveyor.cache import Descriptive
from conveyor.io.files import sha256_file, write_atomically


class CorruptStoreObjectError(ValueError):
    """An object in a store does not hold the bytes its SHA-256 promises."""


class StoreUnavailableError(OSError):
    """The object store could not be reached or refused the request."""


class StoreLocation(BaseModel):
    """A folder, or an object store (fsspec URL) that this host reads through checked local copies."""

    # How a sentence names the store ("the data store s3://… could not be used").
    kind: ClassVar[str] = "store"

    url: str = Field(description="A folder, or an fsspec URL such as s3://bucket/prefix.")
    # Who may read the store is no part of what a task computes, so credentials never enter a cache key.
    credentials: Annotated[S3Credentials | None, Descriptive] = Field(
        None, description="Credentials of an s3:// store; empty: the environment's."
    )

    @property
    def is_local(self) -> bool:
        """Whether the store is a folder of this host (read in place) rather than an object store."""
        return get_protocol(self.url) in LocalFileSystem.protocol

    def url_of(self, relative: str) -> str:
        """The address of ``relative`` in the store."""
        return f"{self.url.rstrip('/')}/{relative}"

    @contextmanager
    def remote(self) -> Iterator[tuple[AbstractFileSystem, str]]:
        """The object store's filesystem and root; a failure to use it becomes one sentence naming the store."""
        # Listings are never cached: other hosts write the store, and a stale listing would hide their objects.
        options = {"use_listings_cache": False, **(self.credentials.storage_options() if self.credentials else {})}
        try:
            yield url_to_fs(self.url, **options)
        except CorruptStoreObjectError:
            raise
        except Exception as error:  # each fsspec backend raises its own client library's errors
            raise StoreUnavailableError(f"The {self.kind} {self.url} could not be used: {error}") from error

    def download(self, relative: str, local: Path, sha256: str) -> Path | None:
        """Copy ``relative`` to ``local`` if it holds the bytes of ``sha256``; None when the store lacks it.

        The copy is checked before it gets its name, so a local copy is never of bytes other than those expected.
        """
        with self.remote() as (fs, root):
            remote = f"{root}/{relative}"
            if not fs.exists(remote):
                return None

            def fetch(tmp: Path) -> None:
                fs.get_file(remote, str(tmp))
                if (found := sha256_file(tmp)) != sha256:
                    raise CorruptStoreObjectError(
                        f"{self.url_of(relative)} holds bytes with SHA-256 {found[:12]}, not {sha256[:12]}; "
                        "it was overwritten outside Conveyor and is not used."
                    )

            return write_atomically(local, fetch)
