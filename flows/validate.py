"""The validate flow: snapshot a landed partition, check its contract, announce the verdict."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from prefect import flow
from pydantic import Field

from blocks.stores import ConveyorStores
from tasks.data import Snapshot, find_partition, snapshot_partition
from tasks.validation import announce_validation, require_valid, validate_snapshot


@flow(name="validate")
def validate(
    partition: Annotated[
        str | None, Field(description="A landed file, by name in the landing folder or by path; empty: the newest.")
    ] = None,
    day: Annotated[
        dt.date | None, Field(description="Day of the landed partition; used when partition is empty.")
    ] = None,
) -> Snapshot:
    """Snapshot a landed partition and check it against the telemetry contract; emits conveyor.validation.*."""
    stores = ConveyorStores.resolve()
    snapshot = snapshot_partition(find_partition(stores.landing_path, day, partition), stores.data_path)
    report = validate_snapshot(snapshot)
    announce_validation(snapshot, report)
    require_valid(report)
    return snapshot
