"""File primitives every store uses: atomic writes and content hashes."""

from __future__ import annotations

import hashlib
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


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
