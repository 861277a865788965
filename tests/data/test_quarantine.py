"""The quarantine keeps one copy of every failing batch, whichever run moves it there first."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from conveyor.data.quarantine import quarantine_batch
from conveyor.data.snapshots import Snapshot
from conveyor.data.synthetic import generate_telemetry, write_partition
from conveyor.io.files import sha256_file

DAY = dt.date(2026, 4, 4)


def _landed(folder: Path) -> Snapshot:
    path = write_partition(generate_telemetry(300, DAY), folder, DAY)
    return Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)


def test_a_batch_another_run_quarantined_meanwhile_is_not_an_error(tmp_path: Path) -> None:
    batch = _landed(tmp_path / "landing")
    first = quarantine_batch(batch, tmp_path / "quarantine")
    # The watcher's validate and a refit's validate judged the same file; the second finds it already moved.
    second = quarantine_batch(batch, tmp_path / "quarantine")
    assert first == second
    kept = first / Path(batch.path).name
    assert sha256_file(kept) == batch.sha256
    assert not any((tmp_path / "landing").iterdir())


def test_the_same_bytes_landing_again_are_kept_once(tmp_path: Path) -> None:
    batch = _landed(tmp_path / "landing")
    copy = tmp_path / "copy.parquet"
    shutil.copyfile(batch.path, copy)
    folder = quarantine_batch(batch, tmp_path / "quarantine")
    shutil.copyfile(copy, batch.path)  # it lands again
    assert quarantine_batch(batch, tmp_path / "quarantine") == folder
    assert len(list(folder.glob("*.parquet"))) == 1
    assert not Path(batch.path).exists()
