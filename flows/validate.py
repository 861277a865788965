"""The validate flow: check a landed partition or a snapshot, keep it or quarantine it, report and announce."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow
from pydantic import Field

from blocks.stores import ConveyorStores
from tasks.caching import report_cache_use
from tasks.data import Snapshot, find_partition, find_snapshot, snapshot_partition
from tasks.datastore import DataStore
from tasks.files import FolderName
from tasks.quarantine import keep_report, quarantine_batch, report_folder
from tasks.statistics import find_training_reference
from tasks.validation import announce_validation, inspect_landed_file, publish_report, require_valid, validate_snapshot


@flow(name="validate")
def validate(
    partition: str | None = Field(
        None, description="A landed file, by name in the landing folder or by path; empty: the newest."
    ),
    day: dt.date | None = Field(None, description="Day of the landed partition; used when partition is empty."),
    snapshot: str | None = Field(
        None, description="SHA-256 of a snapshot in the data store to re-check; overrides both."
    ),
    model_name: FolderName | None = Field(
        None, description="Model whose newest version's data is the reference; empty: any model."
    ),
    announce: bool = Field(
        True, description="Emit conveyor.validation.passed/failed (refit turns this off for its own check)."
    ),
    force_recompute: bool = Field(False, description="Validate again instead of reusing a cached verdict."),
) -> Snapshot:
    """Validate a batch with pandera and Great Expectations; snapshot it if valid, quarantine it if not."""
    stores = ConveyorStores.resolve()
    data_store = DataStore.of(stores)
    if snapshot:
        batch = find_snapshot(data_store, snapshot)
    else:
        batch = inspect_landed_file(find_partition(stores.landing_path, day, partition), stores.landing_path)
    report = validate_snapshot(batch, find_training_reference(stores.model_path, data_store, model_name))
    if report.passed:
        kept = batch if snapshot else snapshot_partition(Path(batch.path), data_store)
        folder = report_folder(data_store, batch.sha256)
        report = publish_report(report, folder)
        keep_report(folder, data_store, batch.sha256)
    else:
        kept = batch
        report = publish_report(report, quarantine_batch(batch, stores.quarantine_path))
    if announce:
        announce_validation(kept, report)
    require_valid(report)
    report_cache_use()
    return kept
