"""File primitives every store uses: atomic writes and content hashes."""

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


def write_atomically(target: Path, write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a hidden temporary file beside ``target``, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def write_text_atomically(target: Path, text: str) -> Path:
    """Replace a text file in one step; readers see the old content or the new, never a mix."""
    return write_atomically(target, lambda tmp: tmp.write_text(text))


def fsync_folder(folder: Path) -> None:
    """Make the entries renamed into ``folder`` survive a power cut."""
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def publish_folder(target: Path, build: Callable[[Path], object]) -> Path:
    """Let ``build`` fill a hidden temporary folder beside ``target``, then move what it made in: all or nothing.

    A new ``target`` appears whole, in one rename. Into an existing one (a quarantine folder holding its batch, an
    earlier report) each entry moves in one rename, replacing the entry of that name and keeping the others. If
    ``build`` fails (a full disk), nothing of it is left.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        staging.mkdir()
        build(staging)
        try:
            staging.rename(target)
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


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
