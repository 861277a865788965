"""File primitives every store uses: durable atomic writes and renames, and content hashes."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from pydantic import StringConstraints

# Model and edge-target names become folder names: lowercase letters, digits and dashes only.
FolderName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")]
_CHUNK = 1 << 20


def fsync_file(path: Path) -> None:
    """Flush a file's bytes to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (names added, renamed or removed in it) to the disk."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno != errno.EINVAL:  # EINVAL: a filesystem that cannot sync folders, so there is nothing to flush
            raise
    finally:
        os.close(descriptor)


def make_folders(folder: Path) -> Path:
    """Create a folder and its missing parents, each new name synced into its parent so a power cut keeps it."""
    if not folder.is_dir():
        make_folders(folder.parent)
        folder.mkdir(exist_ok=True)
        fsync_folder(folder.parent)
    return folder


def rename_durably(source: Path, target: Path) -> Path:
    """Rename a file or a fully written folder into place: its content synced first, the new name after."""
    for path in [*source.rglob("*"), source] if source.is_dir() else [source]:
        (fsync_folder if path.is_dir() else fsync_file)(path)
    source.replace(target)
    fsync_folder(target.parent)
    if source.parent != target.parent:
        fsync_folder(source.parent)
    return target


def write_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a hidden temporary file beside ``target``, then rename it into place, durably."""
    make_folders(target.parent)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        # Synced before the rename, or a power cut can leave the new name on an empty file.
        rename_durably(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_text_atomically(target: Path, text: str) -> Path:
    """Replace a text file in one step; readers see the old content or the new, never a mix."""
    return write_atomically(target, lambda tmp: tmp.write_text(text))


def publish_folder(target: Path, build: Callable[[Path], object]) -> Path:
    """Let ``build`` fill a hidden temporary folder beside ``target``, then move what it made in: all or nothing.

    A new ``target`` appears whole, in one rename. Into an existing one (a quarantine folder holding its batch, an
    earlier report) each entry moves in one rename, replacing the entry of that name and keeping the others. If
    ``build`` fails (a full disk), nothing of it is left.
    """
    make_folders(target.parent)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        staging.mkdir()
        build(staging)
        try:
            rename_durably(staging, target)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            for entry in sorted(staging.iterdir(), key=lambda e: not e.is_dir()):  # folders first, files last
                _replace_entry(entry, target / entry.name)
            fsync_folder(target)
        fsync_folder(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _replace_entry(entry: Path, target: Path) -> None:
    """Rename ``entry`` over ``target``; a folder in the way is renamed aside first, then removed."""
    if not (entry.is_dir() and target.is_dir()):
        entry.replace(target)
        return
    aside = target.with_name(f".{target.name}.{uuid.uuid4().hex}.old")
    target.rename(aside)
    entry.rename(target)
    shutil.rmtree(aside)


def copy_hashing(source: Path, target: Path) -> str:
    """Copy a file into a new ``target``, reading it once; returns the SHA-256 of exactly the bytes copied."""
    digest = hashlib.sha256()
    with source.open("rb") as reader, target.open("xb") as writer:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
