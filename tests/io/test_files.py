"""Atomic writes survive a power cut: the bytes reach the disk before the name points at them, the name right after."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.io.files import rename_durably, write_atomically, write_text_atomically
from tests.fixtures.disk import DiskLog


def test_a_written_file_is_synced_before_its_rename_and_its_folder_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "report.json"
    disk = DiskLog(monkeypatch)
    write_text_atomically(target, "{}")
    renamed = disk.renamed_at(target)
    tmp = disk.renamed_from(target)
    # A power cut after the rename but before the file's fsync could leave report.json empty.
    assert any(at < renamed for at in disk.synced_at(tmp)), disk.events
    # Until the folder is synced, the new name itself may vanish in a power cut.
    assert any(at > renamed for at in disk.synced_at(tmp_path)), disk.events
    assert target.read_text() == "{}"


def test_new_folders_are_synced_into_their_parents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "snapshots" / "ab" / "abcd.parquet"
    disk = DiskLog(monkeypatch)
    write_atomically(target, lambda tmp: tmp.write_bytes(b"PAR1"))
    renamed = disk.renamed_at(target)
    for parent in (tmp_path, tmp_path / "snapshots"):
        assert any(at < renamed for at in disk.synced_at(parent)), (parent, disk.events)


def test_a_folder_renamed_into_place_has_every_file_and_folder_synced_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = tmp_path / ".staging" / "run"
    (staging / "edge").mkdir(parents=True)
    for name in ("model.onnx", "edge/bundle.tar.gz", "manifest.json"):
        (staging / name).write_bytes(b"bytes")
    target = tmp_path / "v1"
    disk = DiskLog(monkeypatch)
    rename_durably(staging, target)
    renamed = disk.renamed_at(target)
    for path in (staging / "model.onnx", staging / "edge" / "bundle.tar.gz", staging / "manifest.json"):
        assert any(at < renamed for at in disk.synced_at(path)), (path, disk.events)
    for folder in (staging, staging / "edge"):
        assert any(at < renamed for at in disk.synced_at(folder)), (folder, disk.events)
    assert any(at > renamed for at in disk.synced_at(tmp_path)), disk.events
    assert (target / "edge" / "bundle.tar.gz").read_bytes() == b"bytes"


def test_a_failed_write_leaves_neither_the_target_nor_a_temporary_file(tmp_path: Path) -> None:
    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_atomically(tmp_path / "out.parquet", fail)
    assert list(tmp_path.iterdir()) == []
