"""Where a model store keeps its objects: a folder, or an S3 bucket (``s3://bucket/prefix``) read through local copies.

The registry needs little of a store: the folders under a name, an object's bytes, an object replaced whole
(atomically, and if asked only when unchanged since it was read), an object created only if absent, a version
published with its manifest last, and an append-only log. A folder does these with renames, hard links and appends;
a bucket with single PUTs, each made conditional on the object's ETag (``If-Match``) or on its absence
(``If-None-Match: *``), so a writer that bypassed the registry lock still cannot overwrite a newer object. Readers
get local paths either way: the folder itself, or this host's copies, each checked against its SHA-256 first.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from fsspec.core import url_to_fs
from fsspec.utils import get_protocol

from conveyor.blocks import ConveyorStores, S3Credentials
from conveyor.data.objects import CorruptStoreObjectError, StoreLocation
from conveyor.io.files import (
    fsync_file,
    fsync_folder,
    make_folders,
    rename_durably,
    sha256_file,
    write_atomically,
)
from conveyor.settings import get_settings

# What a read saw of an object, for a later conditional replace: its SHA-256 in a folder, its ETag in a bucket.
Tag = str
# S3 refuses a conditional PUT whose condition no longer holds (412), or that raced another one on the key (409).
_LOST_CONDITIONS = ("PreconditionFailed", "ConditionalRequestConflict")


class ModelStore(StoreLocation, ABC):
    """A model store: the objects of the registry, with the few operations the registry makes on them."""

    kind: ClassVar[str] = "model store"

    def __str__(self) -> str:
        """The store's URL: what a cache key records of it (a ``Location``), and what a sentence names."""
        return self.url

    @staticmethod
    def at(where: ModelStore | Path | str, credentials: S3Credentials | None = None) -> ModelStore:
        """The model store at a folder or an ``s3://`` URL (a store given is returned as it is)."""
        if isinstance(where, ModelStore):
            return where
        url = str(where)
        protocol = get_protocol(url)
        if protocol in ("s3", "s3a"):
            return BucketModelStore(url=url, credentials=credentials)
        if protocol not in ("file", "local"):
            raise ValueError(f"The model store {url} is neither a folder nor an s3:// URL.")
        return FolderModelStore(url=url, credentials=credentials)

    @staticmethod
    def of(stores: ConveyorStores) -> ModelStore:
        """The model store a stores block configures."""
        return ModelStore.at(stores.model_store, stores.model_store_credentials)

    @property
    @abstractmethod
    def local_root(self) -> Path:
        """Where this host reads the store: the folder itself, or its local copies (laid out the same)."""

    @abstractmethod
    def folders(self, relative: str) -> list[str]:
        """Names of the folders directly under ``relative`` (empty: the store's top level), sorted."""

    @abstractmethod
    def read(self, relative: str) -> tuple[bytes, Tag] | None:
        """An object's bytes and the tag to replace it conditionally; None when there is none."""

    @abstractmethod
    def write(self, relative: str, data: bytes) -> None:
        """Replace (or create) an object whole: a reader sees the old bytes or the new."""

    @abstractmethod
    def replace(self, relative: str, data: bytes, expected: Tag | None) -> bool:
        """Replace an object whole if it is still as read (``expected``; None: absent); False, untouched, if not."""

    @abstractmethod
    def create(self, relative: str, data: bytes) -> bool:
        """Create an object, whole, only if none of that name exists; False if one did."""

    @abstractmethod
    def local_copy(self, relative: str) -> Path | None:
        """A local file holding the object's current bytes (for objects without a recorded hash); None if absent."""

    @abstractmethod
    def fetch(self, relative: str, sha256: str) -> Path:
        """A local file holding exactly the bytes of ``sha256``.

        FileNotFoundError when the store lacks the object, CorruptStoreObjectError when it holds other bytes.
        """

    @abstractmethod
    def publish(self, staging: Path, relative: str, last: str) -> None:
        """Make a folder staged on this host the store's ``relative``: every file first, ``last`` once all are in."""

    @abstractmethod
    def append(self, log: str, sequence: int, record: bytes) -> None:
        """Add record ``sequence`` to an append-only log; a record already there is never rewritten."""

    @abstractmethod
    def records(self, log: str) -> list[tuple[str, bytes]]:
        """Every record of a log, oldest first, each with where it lies (to name it in a warning)."""


class FolderModelStore(ModelStore):
    """A model store in a folder of this host (or a shared POSIX one): read in place, written by renames."""

    @property
    def local_root(self) -> Path:
        """The folder itself."""
        return Path(url_to_fs(self.url)[1])

    def folders(self, relative: str) -> list[str]:
        """Names of the subfolders of ``relative``."""
        folder = self.local_root / relative
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def read(self, relative: str) -> tuple[bytes, Tag] | None:
        """The file's bytes and their SHA-256."""
        path = self.local_root / relative
        if not path.is_file():
            return None
        data = path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def write(self, relative: str, data: bytes) -> None:
        """Written beside the file, synced, renamed over it."""
        write_atomically(self.local_root / relative, lambda tmp: tmp.write_bytes(data))

    def replace(self, relative: str, data: bytes, expected: Tag | None) -> bool:
        """Compared, then renamed over: one step only because every writer holds the registry lock."""
        found = self.read(relative)
        if (found[1] if found else None) != expected:
            return False
        self.write(relative, data)
        return True

    def create(self, relative: str, data: bytes) -> bool:
        """Written aside and hard-linked to its name: link() fails if the name exists, and shows a whole file."""
        target = self.local_root / relative
        make_folders(target.parent)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            fsync_file(tmp)
            try:
                os.link(tmp, target)
            except FileExistsError:
                return False
            fsync_folder(target.parent)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    def local_copy(self, relative: str) -> Path | None:
        """The file itself."""
        path = self.local_root / relative
        return path if path.is_file() else None

    def fetch(self, relative: str, sha256: str) -> Path:
        """The file itself, once its bytes are checked."""
        path = self.local_root / relative
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing.")
        if sha256_file(path) != sha256:
            raise CorruptStoreObjectError(f"{path} does not hold the bytes of SHA-256 {sha256[:12]}.")
        return path

    def publish(self, staging: Path, relative: str, last: str) -> None:
        """One rename: ``last`` is already in the folder, which appears whole."""
        rename_durably(staging, self.local_root / relative)

    def append(self, log: str, sequence: int, record: bytes) -> None:
        """One line of ``<log>.jsonl``, synced; a line a crash left torn gets a newline first, so it stays one line."""
        path = self.local_root / f"{log}.jsonl"
        make_folders(path.parent)
        with path.open("ab") as lines:
            if lines.tell() and path.read_bytes()[-1:] != b"\n":
                lines.write(b"\n")
            lines.write(record + b"\n")
            lines.flush()
            os.fsync(lines.fileno())

    def records(self, log: str) -> list[tuple[str, bytes]]:
        """The lines of ``<log>.jsonl``."""
        path = self.local_root / f"{log}.jsonl"
        lines = path.read_bytes().splitlines() if path.is_file() else []
        return [(f"{path} line {number}", line) for number, line in enumerate(lines, start=1)]


class BucketModelStore(ModelStore):
    """A model store in an S3 bucket that has conditional writes: single PUTs, read through checked local copies."""

    @property
    def local_root(self) -> Path:
        """Where this host keeps its copies of the bucket's objects: under the bucket and prefix."""
        return get_settings().store_copies_dir / "models" / self.url.split("://", 1)[1].strip("/")

    def folders(self, relative: str) -> list[str]:
        """The common prefixes under ``relative``."""
        with self.remote() as (fs, root):
            try:
                entries = fs.ls(f"{root}/{relative}".rstrip("/"), detail=True)
            except FileNotFoundError:
                return []
        return sorted(PurePosixPath(e["name"]).name for e in entries if e["type"] == "directory")

    def read(self, relative: str) -> tuple[bytes, Tag] | None:
        """One GET, conditional on the ETag its HEAD saw: the bytes are those of that ETag."""
        with self.remote() as (fs, root):
            try:
                with fs.open(f"{root}/{relative}", "rb") as stored:
                    return stored.read(), str(stored.details["ETag"])
            except FileNotFoundError:
                return None

    def write(self, relative: str, data: bytes) -> None:
        """One PUT: S3 shows an object only once its upload is complete."""
        with self.remote() as (fs, root):
            fs.pipe_file(f"{root}/{relative}", data)

    def replace(self, relative: str, data: bytes, expected: Tag | None) -> bool:
        """One PUT with ``If-Match`` on the ETag read (``If-None-Match: *`` when it was absent)."""
        condition: dict[str, Any] = {"mode": "create"} if expected is None else {"IfMatch": expected}
        return self._put_if(relative, data, condition)

    def create(self, relative: str, data: bytes) -> bool:
        """One PUT with ``If-None-Match: *``."""
        return self._put_if(relative, data, {"mode": "create"})

    def _put_if(self, relative: str, data: bytes, condition: dict[str, Any]) -> bool:
        with self.remote() as (fs, root):
            try:
                fs.pipe_file(f"{root}/{relative}", data, **condition)
            except OSError as error:
                response = getattr(error.__cause__, "response", None) or {}
                if isinstance(error, FileExistsError) or response.get("Error", {}).get("Code") in _LOST_CONDITIONS:
                    return False
                raise
        return True

    def local_copy(self, relative: str) -> Path | None:
        """The object fetched again on every call (it may change), rewritten locally only when its bytes did."""
        found = self.read(relative)
        local = self.local_root / relative
        if found is None:
            local.unlink(missing_ok=True)
            return None
        if not (local.is_file() and local.read_bytes() == found[0]):
            write_atomically(local, lambda tmp: tmp.write_bytes(found[0]))
        return local

    def fetch(self, relative: str, sha256: str) -> Path:
        """The bucket's object checked first (by the SHA-256 checksum S3 keeps, else by downloading it), then the copy.

        A copy that fails its hash is fetched again; one the bucket no longer backs is never used.
        """
        local = self.local_root / relative
        with self.remote() as (fs, root):
            bucket, key, _ = fs.split_path(f"{root}/{relative}")
            try:
                head = fs.call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
            except FileNotFoundError:
                raise FileNotFoundError(f"{self.url_of(relative)} is missing.") from None
        expected = base64.b64encode(bytes.fromhex(sha256)).decode()
        if head.get("ChecksumSHA256") == expected and local.is_file() and sha256_file(local) == sha256:
            return local
        local.unlink(missing_ok=True)
        fetched = self.download(relative, local, sha256)  # the bytes themselves decide, checksum or not
        if fetched is None:
            raise FileNotFoundError(f"{self.url_of(relative)} is missing.")
        return fetched

    def publish(self, staging: Path, relative: str, last: str) -> None:
        """Every file PUT with its SHA-256 checksum, then ``last`` if no object of its name exists; then the copy."""
        files = sorted(p for p in staging.rglob("*") if p.is_file() and p.relative_to(staging).as_posix() != last)
        with self.remote() as (fs, root):
            for file in files:
                # S3 checks the bytes against the checksum and keeps it: fetch() compares it without a download.
                fs.put_file(
                    str(file), f"{root}/{relative}/{file.relative_to(staging).as_posix()}", ChecksumAlgorithm="SHA256"
                )
        if not self._put_if(f"{relative}/{last}", (staging / last).read_bytes(), {"mode": "create"}):
            raise FileExistsError(f"{self.url_of(relative)} is already published; nothing was replaced.")
        # This host's copy is the staged folder itself: the very bytes just uploaded.
        local = self.local_root / relative
        shutil.rmtree(local, ignore_errors=True)
        rename_durably(staging, make_folders(local.parent) / local.name)

    def append(self, log: str, sequence: int, record: bytes) -> None:
        """One object per record, ``<log>/<sequence>.json``, created only if absent (S3 has no append)."""
        self.create(f"{log}/{sequence:08d}.json", record)

    def records(self, log: str) -> list[tuple[str, bytes]]:
        """The objects under ``<log>/``, by sequence (their zero-padded names sort in order)."""
        with self.remote() as (fs, root):
            try:
                names = sorted(fs.ls(f"{root}/{log}", detail=False))
            except FileNotFoundError:
                return []
            found = fs.cat(names) if names else {}  # fetched side by side
        return [(self.url_of(f"{log}/{PurePosixPath(name).name}"), found[name]) for name in names]
