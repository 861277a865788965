"""The refit pipeline: landed partition in, registered and ONNX-exported model version out."""

from __future__ import annotations

import datetime as dt

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from conveyor.blocks import ConveyorStores
from conveyor.cache.report import reporting_cache_use
from conveyor.data.snapshots import find_newest_partition
from conveyor.export.edge import EdgeTarget
from conveyor.export.families import ModelFamily, build_model
from conveyor.export.onnx import ParityThresholds
from conveyor.flows.validate import validate
from conveyor.io.files import FolderName
from conveyor.models.boosting import BoostingParams
from conveyor.models.cluster import ClusterSpec
from conveyor.models.training import TrainingParams
from conveyor.registry.candidate import build_candidate
from conveyor.registry.register import publish_model_report, register_candidate
from conveyor.registry.storage import ModelStore
from conveyor.registry.store import RegisteredVersion
from conveyor.schema.catalog import find_spec

DEFAULT_TRAINING = TrainingParams()
DEFAULT_BOOSTING = BoostingParams()
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
    family: ModelFamily = Field(
        "torch", description="Model family to train and register: the torch MLP, or XGBoost's boosted trees."
    ),
    training: TrainingParams = Field(DEFAULT_TRAINING, description="Model and optimizer settings (torch)."),
    boosting: BoostingParams = Field(DEFAULT_BOOSTING, description="Tree settings (xgboost)."),
    cluster: ClusterSpec = Field(
        DEFAULT_CLUSTER, description="Train in-process (1 worker), on a local Dask cluster, or on one by address."
    ),
    model_name: FolderName | None = Field(
        None, description="Registry name of the model; empty: the dataset's (failure-predictor for telemetry)."
    ),
    parity: ParityThresholds = Field(DEFAULT_PARITY, description="How closely ONNX Runtime must reproduce the model."),
    edge_targets: list[EdgeTarget] = Field(
        DEFAULT_EDGE_TARGETS, description="Devices to build a bundle for, and their accuracy limits (torch only)."
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
        metadata = {"model_name": model_name, "data_sha256": data.sha256}
        built = build_model(data, spec, family, training, boosting, cluster, parity, production, metadata)
        candidate = build_candidate(data, built, edge_targets)
        # Bundles only for the targets the candidate has variants for: none when its family has no edge variants.
        bundle_targets = [] if candidate.edge_skipped else edge_targets
        if candidate.edge_skipped:
            get_run_logger().warning("No edge bundles for this %s model: %s.", family, candidate.edge_skipped)
        registered = register_candidate(
            ModelStore.of(stores), model_name, candidate, bundle_targets, str(flow_run.id or "local")
        )
        publish_model_report(registered, candidate)
        return registered
