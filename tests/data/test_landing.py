"""The landing zone: a partition is complete once two polls see it unchanged, and is announced once."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec

from conveyor.data.landing import WatcherState, announce_partition, complete_partitions, scan_landing, sha256_url
from conveyor.io.files import sha256_file
from conveyor.schema.telemetry import TELEMETRY
from tests.fixtures.server import wait_for_event


def test_a_file_still_growing_is_not_complete_until_two_polls_agree(tmp_path: Path) -> None:
    partial = tmp_path / "telemetry-2026-02-01.parquet"
    partial.write_bytes(b"x" * 10)
    state = WatcherState()
    first = scan_landing(str(tmp_path), TELEMETRY.partition_glob)
    assert complete_partitions({}, first, state) == []
    with partial.open("ab") as handle:
        handle.write(b"y" * 10)
    second = scan_landing(str(tmp_path), TELEMETRY.partition_glob)
    assert complete_partitions(first, second, state) == []
    third = scan_landing(str(tmp_path), TELEMETRY.partition_glob)
    assert complete_partitions(second, third, state) == [str(partial)]


def test_empty_hidden_and_foreign_files_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "telemetry-2026-02-02.parquet").touch()
    (tmp_path / ".telemetry-2026-02-03.parquet.abc.tmp").write_bytes(b"partial")
    (tmp_path / "notes.txt").write_text("hello")
    scan = scan_landing(str(tmp_path), TELEMETRY.partition_glob)
    assert complete_partitions(scan, scan, WatcherState()) == []
    assert scan_landing(str(tmp_path / "missing"), TELEMETRY.partition_glob) == {}


def test_announced_files_are_not_announced_again_after_a_restart_unless_rewritten(tmp_path: Path) -> None:
    landing, state_file = tmp_path / "landing", tmp_path / "state" / "announced.json"
    partition = landing / "telemetry-2026-02-04.parquet"
    landing.mkdir()
    partition.write_bytes(b"first version")
    scan = scan_landing(str(landing), TELEMETRY.partition_glob)
    state = WatcherState()
    for url in complete_partitions(scan, scan, state):
        state.announced[url] = announce_partition.fn(url, scan[url], "telemetry")
    state.save(state_file)

    restarted = WatcherState.load(state_file)
    assert restarted.announced[str(partition)].sha256 == sha256_file(partition)
    assert complete_partitions(scan, scan_landing(str(landing), TELEMETRY.partition_glob), restarted) == []
    partition.write_bytes(b"a longer second version")
    rewritten = scan_landing(str(landing), TELEMETRY.partition_glob)
    assert complete_partitions(rewritten, rewritten, restarted) == [str(partition)]


def test_object_stores_are_polled_through_fsspec() -> None:
    root = f"memory:///landing-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root}/telemetry-2026-02-05.parquet", b"parquet bytes")
    fs.pipe(f"{root}/other.csv", b"a,b")
    first = scan_landing(root, TELEMETRY.partition_glob)
    assert list(first) == [f"{root}/telemetry-2026-02-05.parquet"]
    assert complete_partitions(first, scan_landing(root, TELEMETRY.partition_glob), WatcherState()) == list(first)
    assert len(sha256_url(next(iter(first)))) == 64


def test_announcing_emits_data_landed_with_path_and_hash(tmp_path: Path) -> None:
    partition = tmp_path / "telemetry-2026-02-06.parquet"
    partition.write_bytes(uuid.uuid4().bytes)
    signature = scan_landing(str(tmp_path), TELEMETRY.partition_glob)[str(partition)]
    landed = announce_partition.fn(str(partition), signature, "telemetry")
    event = wait_for_event("conveyor.data.landed", f"conveyor.partition.{landed.sha256}")
    assert event["resource"]["conveyor.partition.path"] == str(partition)
    assert event["resource"]["conveyor.partition.sha256"] == sha256_file(partition)
