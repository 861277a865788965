"""The validate flow: the one gate every batch passes, for its own runs and for refit, train and tune."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow
from pydantic import Field

from conveyor.blocks import ConveyorStores
from conveyor.cache.report import reporting_cache_use
from conveyor.data.landing import claims_folder, clear_landed_file, inspect_landed_file
from conveyor.data.quarantine import keep_report, quarantine_batch, report_folder
from conveyor.data.snapshots import Snapshot, find_partition, find_snapshot, snapshot_partition
from conveyor.data.store import DataStore
from conveyor.io.files import FolderName
from conveyor.registry.storage import ModelStore
from conveyor.schema.catalog import find_spec
from conveyor.schema.spec import DatasetSpec
from conveyor.validation.reference import find_training_reference
from conveyor.validation.tasks import announce_validation, publish_report, require_valid, validate_snapshot


def find_batch(
    stores: ConveyorStores,
    data_store: DataStore,
    spec: DatasetSpec,
    partition: str | None,
    day: dt.date | None,
    snapshot: str | None,
    file: str | None,
    claims: Path,
) -> Snapshot:
    """The batch a run asked for: a stored snapshot by hash, or a private copy of a file or landed partition."""
    if snapshot:
        return find_snapshot(data_store, snapshot)
    if file:
        return inspect_landed_file(Path(file), None, claims)
    return inspect_landed_file(find_partition(stores.landing_path, spec, day, partition), stores.landing_path, claims)


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
    file: str | None = Field(
        None,
        description="A parquet file anywhere, checked where it lies and never moved (a failing one is copied into "
        "the quarantine); overrides partition and day.",
    ),
    dataset: str | None = Field(
        None, description="Dataset spec by name (partition names, contract); empty: CONVEYOR_DATASET (telemetry)."
    ),
) -> Snapshot:
    """Validate a batch with pandera and Great Expectations; snapshot it if valid, quarantine it if not."""
    stores = ConveyorStores.resolve()
    data_store = DataStore.of(stores)
    spec = find_spec(dataset)
    with reporting_cache_use(), claims_folder(stores.landing_path) as claims:
        # Every step below reads the bytes judged (a stored snapshot, or this run's private copy), never a name again.
        batch = find_batch(stores, data_store, spec, partition, day, snapshot, file, claims)
        reference = find_training_reference(ModelStore.of(stores), data_store, model_name)
        report = validate_snapshot(batch, spec, reference)
        if report.passed:
            kept = batch
            if not snapshot:  # its source is the landed file, not this run's private copy
                kept = snapshot_partition(Path(batch.path), data_store).model_copy(update={"source": batch.source})
            folder = report_folder(data_store, batch.sha256)
            report = publish_report(report, folder)
            keep_report(folder, data_store, batch.sha256)
        else:
            kept = batch
            report = publish_report(report, quarantine_batch(batch, stores.quarantine_path))
            if not (snapshot or file):  # a snapshot stays in the data store, a file given by path where it lies
                clear_landed_file(batch)
        if announce:
            announce_validation(kept, report)
        require_valid(report)
        return kept
