"""The validate flow snapshots a landed partition, judges it, and tells automations the verdict."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect.client.schemas.objects import State

from blocks.stores import ConveyorStores
from flows.validate import validate
from tasks.data import Snapshot
from tasks.events import VALIDATION_FAILED, VALIDATION_PASSED
from tasks.files import sha256_file
from tasks.synthetic import Corruption, generate_telemetry, write_partition
from tests.conftest import wait_for_event


def _validate(**kwargs: object) -> State:
    state = validate(return_state=True, **kwargs)
    assert isinstance(state, State)
    return state


def test_clean_partition_passes_and_announces_its_snapshot(landed_partition: Path) -> None:
    state = _validate(partition=landed_partition.name)
    assert state.is_completed(), state.message
    snapshot = state.result()
    assert isinstance(snapshot, Snapshot)
    assert snapshot.sha256 == sha256_file(landed_partition)
    event = wait_for_event(VALIDATION_PASSED, f"conveyor.snapshot.{snapshot.sha256}")
    assert event["resource"]["conveyor.snapshot.sha256"] == snapshot.sha256
    assert event["payload"]["rows"] > 0


def test_corrupt_partition_fails_and_announces_why(stores: ConveyorStores) -> None:
    day = dt.date(2026, 7, 7)
    landed = write_partition(generate_telemetry(3_000, day, corrupt=(Corruption.NULLS,)), stores.landing_path, day)
    state = _validate(partition=landed.name)
    assert state.is_failed()
    assert "not_nullable on temperature" in str(state.message)
    event = wait_for_event(VALIDATION_FAILED, f"conveyor.snapshot.{sha256_file(landed)}")
    assert "not_nullable on temperature" in event["payload"]["summary"]
