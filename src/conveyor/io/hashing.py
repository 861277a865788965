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

# A file changed this recently may change again within the same timestamp tick, so its hash is not remembered.
_RACY_WINDOW_NS = 2_000_000_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, digest TEXT
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


def _signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What must be unchanged for a file's bytes to be: size, mtime, ctime (no user call can set it) and inode."""
    return (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)


class StatCache:
    """Remembers (path, size, mtime, ctime, inode) → hash in SQLite, so re-checking an unchanged file costs a stat."""

    def __init__(self, database: Path) -> None:
        database.parent.mkdir(parents=True, exist_ok=True)
        # One connection per process, shared by threads (Prefect runs sync tasks in worker threads).
        self._db = sqlite3.connect(database, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Earlier versions' table keyed rows without ctime (an edit that restored the mtime matched): never trusted.
        self._db.execute("DROP TABLE IF EXISTS files")
        self._db.execute(_SCHEMA)
        self._lock = threading.Lock()

    def file_hash(self, path: Path) -> str:
        """The file's BLAKE3, read from the cache when its size, mtime, ctime and inode are unchanged."""
        key = str(path.resolve())
        signature = _signature(path.stat())
        with self._lock:
            row = self._db.execute(
                "SELECT size, mtime_ns, ctime_ns, inode, digest FROM file_hashes WHERE path = ?", (key,)
            ).fetchone()
        if row and tuple(row[:4]) == signature:
            return str(row[4])
        digest = hash_file_bytes(path)
        after = path.stat()
        # ctime too: an edit that restores the mtime within the tick of the last change would keep every field.
        settled = time.time_ns() - max(after.st_mtime_ns, after.st_ctime_ns) > _RACY_WINDOW_NS
        if settled and _signature(after) == signature:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?)", (key, *signature, digest)
                )
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
