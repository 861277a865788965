"""The landing watcher starts whatever its saved state looks like."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

import conveyor.flows.watch as watcher


def test_a_damaged_state_file_is_kept_aside_and_the_watcher_starts_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    settings = watcher.SETTINGS.model_copy(
        update={
            "state_dir": tmp_path / "state",
            "watcher": watcher.SETTINGS.watcher.model_copy(update={"watch_url": str(landing)}),
        }
    )
    monkeypatch.setattr(watcher, "SETTINGS", settings)
    damaged = b'{"announced": {"/landing/telemetry-2026-02-01.parquet": {"url": '  # cut off mid-write
    settings.watcher_state_file.parent.mkdir(parents=True)
    settings.watcher_state_file.write_bytes(damaged)

    with caplog.at_level(logging.WARNING):
        watcher.watch(threading.Event(), max_polls=1)

    (kept,) = settings.watcher_state_file.parent.glob("announced.json.damaged-*")
    assert kept.read_bytes() == damaged
    assert not settings.watcher_state_file.exists()
    (line,) = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert line.startswith(f"Watcher state {settings.watcher_state_file} is damaged (")
    assert line.endswith(f"kept it as {kept.name} and started empty.")
