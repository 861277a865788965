"""The validate flow: check a landed partition or a snapshot, keep it or quarantine it, report and announce."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow
from pydantic import Field

from blocks.stores import ConveyorStores
from tasks.caching import report_cache_use
from tasks.data import Snapshot, find_partition, find_snapshot, snapshot_partition
from tasks.files import FolderName
from tasks.quarantine import quarantine_batch, report_folder
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
    if snapshot:
        batch = find_snapshot(stores.data_path, snapshot)
    else:
        batch = inspect_landed_file(find_partition(stores.landing_path, day, partition), stores.landing_path)
    report = validate_snapshot(batch, find_training_reference(stores.model_path, stores.data_path, model_name))
    if report.passed:
        kept = batch if snapshot else snapshot_partition(Path(batch.path), stores.data_path)
        folder = report_folder(stores.data_path, batch.sha256)
    else:
        kept, folder = batch, quarantine_batch(batch, stores.quarantine_path)
    report = publish_report(report, folder)
    if announce:
        announce_validation(kept, report)
    require_valid(report)
    report_cache_use()
    return kept
