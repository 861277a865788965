"""The training reference: the snapshot the newest registered model was trained on; new batches are compared with it."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from conveyor.cache import uncached_task
from conveyor.data.snapshots import Snapshot, stored_snapshot
from conveyor.data.store import DataStore
from conveyor.registry.store import StoreRef, list_versions, read_manifest


def find_reference(model_store: StoreRef, data_store: DataStore, model_name: str | None = None) -> Snapshot | None:
    """The data snapshot of the newest registered model version (of ``model_name``, or of any model)."""
    versions = list_versions(model_store, model_name)
    if not versions:
        return None
    # Newest by the registration time its manifest records: a bucket's local copy was written when it was fetched.
    newest = max(versions, key=lambda v: str(read_manifest(Path(v.path)).get("created_at", "")))
    return stored_snapshot(data_store, newest.data_sha256)


@uncached_task("Find training reference", why="looks up the model store")
def find_training_reference(
    model_store: StoreRef, data_store: DataStore, model_name: str | None = None
) -> Snapshot | None:
    """The snapshot the newest registered model was trained on: what new batches are compared with."""
    reference = find_reference(model_store, data_store, model_name)
    get_run_logger().info(
        "Training reference: %s", f"snapshot {reference.sha256[:12]}" if reference else "none (no model registered)"
    )
    return reference
