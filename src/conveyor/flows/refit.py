"""The refit pipeline: landed partition in, registered and ONNX-exported model version out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from conveyor.blocks import ConveyorStores
from conveyor.cache.report import reporting_cache_use
from conveyor.data.snapshots import find_newest_partition
from conveyor.export.edge import EdgeTarget, build_edge_bundle
from conveyor.export.onnx import ParityThresholds
from conveyor.flows.validate import validate
from conveyor.io.files import FolderName
from conveyor.models.cluster import ClusterSpec
from conveyor.models.training import TrainingParams
from conveyor.registry.candidate import Candidate, build_candidate
from conveyor.registry.lock import registry_lock
from conveyor.registry.register import publish_model_report, register_model_version, reserve_model_version
from conveyor.registry.store import RegisteredVersion
from conveyor.schema.catalog import find_spec

DEFAULT_TRAINING = TrainingParams()
DEFAULT_CLUSTER = ClusterSpec()
DEFAULT_PARITY = ParityThresholds()
DEFAULT_EDGE_TARGETS = [EdgeTarget()]


# The version is the run's result, kept as JSON: a run served from the cache still says which version it made.
@flow(name="refit", log_prints=True, persist_result=True, result_serializer="json")
def refit(
    day: dt.date | None = Field(None, description="Day of the landed partition to train on; empty: the newest one."),
    partition: str | None = Field(
        None, description="A landed file, by name in the landing folder or by path; overrides day."
    ),
    snapshot: str | None = Field(
        None, description="SHA-256 of a snapshot in the data store (e.g. from a validation event); overrides both."
    ),
    training: TrainingParams = Field(DEFAULT_TRAINING, description="Model and optimizer settings."),
    cluster: ClusterSpec = Field(
        DEFAULT_CLUSTER, description="Train in-process (1 worker), on a local Dask cluster, or on one by address."
    ),
    model_name: FolderName | None = Field(
        None, description="Registry name of the model; empty: the dataset's (failure-predictor for telemetry)."
    ),
    parity: ParityThresholds = Field(DEFAULT_PARITY, description="How closely ONNX Runtime must reproduce PyTorch."),
    edge_targets: list[EdgeTarget] = Field(
        DEFAULT_EDGE_TARGETS, description="Devices to build a bundle for, and their accuracy limits."
    ),
    force_recompute: bool = Field(False, description="Recompute every task instead of reusing cached results."),
    dataset: str | None = Field(
        None, description="Dataset spec by name (contract, features); empty: CONVEYOR_DATASET (telemetry)."
    ),
) -> RegisteredVersion:
    """Validate, train, evaluate, export to ONNX and edge bundles, register; unchanged steps reuse cached results."""
    stores = ConveyorStores.resolve()
    spec = find_spec(dataset)
    model_name = model_name or spec.model_name
    with reporting_cache_use():
        # A subflow: the batch is checked, and kept or quarantined, exactly as `validate` does; it raises if invalid.
        # It does not announce: a passed event would trigger another refit (deployments/prefect.yaml).
        data = validate(
            partition=partition,
            day=day,
            snapshot=snapshot,
            model_name=model_name,
            announce=False,
            force_recompute=force_recompute,
            dataset=spec.name,
        )
        production = find_newest_partition(stores.landing_path, spec)
        candidate = build_candidate(data, spec, training, cluster, model_name, parity, edge_targets, production)
        registered = register_candidate(
            stores.model_path, model_name, candidate, edge_targets, str(flow_run.id or "local")
        )
        publish_model_report(registered, candidate)
        return registered


def register_candidate(
    model_store: Path, model_name: str, candidate: Candidate, edge_targets: list[EdgeTarget], run_id: str
) -> RegisteredVersion:
    """Reserve a version, bundle it for each edge target and register it, holding the model's registry lock.

    refit/default and refit/gpu run side by side: under the lock, the second refit of a candidate finds the first
    one's reservation and version (cache hits) instead of registering the same candidate again.
    """
    with registry_lock(model_name):
        staged = reserve_model_version(model_store, model_name, candidate, run_id)
        known_inputs = Path(candidate.parity.known_inputs)
        bundles = [
            build_edge_bundle(variant, target, model_name, staged.version, candidate.snapshot.sha256, known_inputs)
            for (variant, _), target in zip(candidate.edge, edge_targets, strict=True)
        ]
        return register_model_version(staged, candidate, bundles, run_id)
