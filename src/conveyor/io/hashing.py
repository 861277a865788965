"""Content hashes of data: BLAKE3 over file bytes, folders as manifests, and a stat cache for unchanged files."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from functools import cache
from pathlib import Path

from blake3 import blake3

from conveyor.settings import get_settings

# A file modified this recently may change again within the same mtime tick, so its hash is not remembered.
_RACY_WINDOW_NS = 2_000_000_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, digest TEXT
)
"""


def hash_bytes(data: bytes) -> str:
    """Hex BLAKE3 of some bytes."""
    return blake3(data).hexdigest()


def hash_file_bytes(path: Path) -> str:
    """Hex BLAKE3 of a file's bytes, memory-mapped and hashed on all cores."""
    hasher = blake3(max_threads=blake3.AUTO)
    if path.stat().st_size:  # mmap refuses empty files
        hasher.update_mmap(path)
    return hasher.hexdigest()


class StatCache:
    """Remembers (path, size, mtime_ns, inode) → hash in SQLite, so re-checking an unchanged file costs a stat."""

    def __init__(self, database: Path) -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        # One connection per process, shared by threads (Prefect runs sync tasks in worker threads).
        self._db = sqlite3.connect(database, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def file_hash(self, path: Path) -> str:
        """The file's BLAKE3, read from the cache when its size, mtime and inode are unchanged."""
        key = str(path.resolve())
        before = path.stat()
        signature = (before.st_size, before.st_mtime_ns, before.st_ino)
        with self._lock:
            row = self._db.execute("SELECT size, mtime_ns, inode, digest FROM files WHERE path = ?", (key,)).fetchone()
        if row and tuple(row[:3]) == signature:
            return str(row[3])
        digest = hash_file_bytes(path)
        after = path.stat()
        settled = time.time_ns() - after.st_mtime_ns > _RACY_WINDOW_NS
        if settled and (after.st_size, after.st_mtime_ns, after.st_ino) == signature:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", (key, *signature, digest))
        return digest

    def tree_hash(self, folder: Path) -> str:
        """A folder's hash: BLAKE3 of its sorted manifest of (relative path, size, file hash)."""
        manifest = [
            (str(path.relative_to(folder)), path.stat().st_size, self.file_hash(path))
            for path in sorted(folder.rglob("*"))
            if path.is_file()
        ]
        return hash_bytes(json.dumps(manifest).encode())

    def content_hash(self, path: Path) -> str:
        """The hash of a file's bytes or of a folder's manifest; the path itself plays no part."""
        if path.is_dir():
            return self.tree_hash(path)
        if path.is_file():
            return self.file_hash(path)
        raise FileNotFoundError(f"{path} does not exist; there is no content to hash.")


@cache
def _stat_cache(database: Path, pid: int) -> StatCache:
    return StatCache(database)


def stat_cache() -> StatCache:
    """The stat cache of this process, in the configured task cache folder."""
    # Keyed by pid too: a forked child must open its own SQLite connection.
    return _stat_cache(get_settings().task_cache_dir / "stat-cache.sqlite", os.getpid())


def content_hash(path: Path) -> str:
    """BLAKE3 content hash of a file or folder, through this installation's stat cache."""
    return stat_cache().content_hash(path)
