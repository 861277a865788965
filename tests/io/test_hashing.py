"""Data is identified by its bytes: BLAKE3 of files, manifests of folders, and a stat cache for unchanged files."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from blake3 import blake3

import conveyor.io.hashing as hashing
from conveyor.io.hashing import StatCache, hash_file_bytes

# The stat cache remembers a file once its last change (content or metadata) is older than this.
SETTLE_S = 2.0


@pytest.fixture
def cache(tmp_path: Path) -> StatCache:
    return StatCache(tmp_path / "stat-cache.sqlite")


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _settle(path: Path) -> Path:
    """Let the file's last change age past the stat cache's window (ctime cannot be set back, so time must pass)."""
    changed_s = path.stat().st_ctime_ns / 1e9
    time.sleep(max(0.0, changed_s + SETTLE_S - time.time()) + 0.05)
    return path


def _edit_in_place_keeping_the_mtime(path: Path, offset: int, data: bytes) -> None:
    """What a careless (or hostile) tool can do: overwrite bytes, then set the modification time back."""
    before = path.stat()
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_file_hash_is_blake3_of_its_bytes(tmp_path: Path, cache: StatCache) -> None:
    data = os.urandom(3_000_000)
    path = _write(tmp_path / "a.bin", data)
    assert cache.content_hash(path) == hash_file_bytes(path) == blake3(data).hexdigest()


def test_empty_file_has_the_hash_of_no_bytes(tmp_path: Path, cache: StatCache) -> None:
    assert cache.content_hash(_write(tmp_path / "empty", b"")) == blake3(b"").hexdigest()


def test_same_bytes_under_another_name_hash_alike_and_one_byte_does_not(tmp_path: Path, cache: StatCache) -> None:
    original = _write(tmp_path / "in" / "day-1.parquet", b"telemetry" * 1000)
    copy = Path(shutil.copy(original, tmp_path / "elsewhere.parquet"))
    changed = _write(tmp_path / "changed.parquet", b"telemetry" * 999 + b"telemetrx")
    assert cache.content_hash(copy) == cache.content_hash(original)
    assert cache.content_hash(changed) != cache.content_hash(original)


def test_folders_hash_by_relative_names_and_contents_not_location(tmp_path: Path, cache: StatCache) -> None:
    for name, data in {"a.txt": b"1", "sub/b.txt": b"2"}.items():
        _write(tmp_path / "one" / name, data)
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    assert cache.content_hash(tmp_path / "one") == cache.content_hash(tmp_path / "two")
    (tmp_path / "two" / "sub" / "b.txt").rename(tmp_path / "two" / "sub" / "c.txt")
    assert cache.content_hash(tmp_path / "one") != cache.content_hash(tmp_path / "two")


def test_an_unchanged_file_is_answered_from_the_stat_cache_without_reading(
    tmp_path: Path, cache: StatCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _settle(_write(tmp_path / "big.bin", b"x" * 100_000))
    first = cache.content_hash(path)

    def read(path: Path) -> str:
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(hashing, "hash_file_bytes", read)
    assert cache.content_hash(path) == first


def test_an_edit_in_place_that_restores_the_mtime_is_hashed_again(tmp_path: Path, cache: StatCache) -> None:
    path = _settle(_write(tmp_path / "big.bin", b"x" * 100_000))
    first = cache.content_hash(path)
    # Same size, mtime and inode, other bytes: only the ctime, which no user call can set, tells.
    _edit_in_place_keeping_the_mtime(path, 0, b"y")
    assert cache.content_hash(path) == blake3(b"y" + b"x" * 99_999).hexdigest() != first


def test_hashes_remembered_without_ctime_are_never_trusted(tmp_path: Path) -> None:
    path = _settle(_write(tmp_path / "data.bin", b"current bytes"))
    stat = path.stat()
    database = tmp_path / "stat-cache.sqlite"
    with sqlite3.connect(database) as earlier:  # the table an earlier version kept, with a row that matches
        earlier.execute(
            "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, inode INTEGER, digest TEXT)"
        )
        earlier.execute(
            "INSERT INTO files VALUES (?, ?, ?, ?, ?)",
            (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino, "stale"),
        )
    assert StatCache(database).content_hash(path) == blake3(b"current bytes").hexdigest()


def test_a_modified_file_is_hashed_again(tmp_path: Path, cache: StatCache) -> None:
    path = _write(tmp_path / "data.bin", b"before")
    first = cache.content_hash(path)
    path.write_bytes(b"after!")  # new mtime
    assert cache.content_hash(path) != first


def test_a_file_modified_just_now_is_not_remembered(tmp_path: Path, cache: StatCache) -> None:
    path = tmp_path / "fresh.bin"
    path.write_bytes(b"aaaa")
    cache.content_hash(path)
    # A second write within the same mtime tick would keep size and mtime: a fresh file must be read again.
    stat = path.stat()
    path.write_bytes(b"bbbb")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.content_hash(path) == blake3(b"bbbb").hexdigest()


def test_hashing_nothing_says_so(tmp_path: Path, cache: StatCache) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cache.content_hash(tmp_path / "missing")
