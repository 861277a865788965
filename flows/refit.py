"""The refit pipeline: landed partition in, registered and ONNX-exported model version out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from blocks.stores import ConveyorStores
from flows.validate import validate
from tasks.caching import report_cache_use
from tasks.cluster import ClusterSpec
from tasks.data import find_newest_partition
from tasks.edge import EdgeTarget, build_edge_bundle, check_edge_accuracy, quantize_for_edge
from tasks.evaluation import evaluate_model
from tasks.export import ParityThresholds, check_onnx_parity, export_onnx
from tasks.files import FolderName
from tasks.registry import Candidate, RegisteredVersion, register_model_version, reserve_model_version
from tasks.training import TrainingParams, train_model

DEFAULT_MODEL_NAME = "failure-predictor"
DEFAULT_TRAINING = TrainingParams()
DEFAULT_CLUSTER = ClusterSpec()
DEFAULT_PARITY = ParityThresholds()
DEFAULT_EDGE_TARGETS = [EdgeTarget()]


@flow(name="refit", log_prints=True)
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
    model_name: FolderName = Field(DEFAULT_MODEL_NAME, description="Registry name of the model."),
    parity: ParityThresholds = Field(DEFAULT_PARITY, description="How closely ONNX Runtime must reproduce PyTorch."),
    edge_targets: list[EdgeTarget] = Field(
        DEFAULT_EDGE_TARGETS, description="Devices to build a bundle for, and their accuracy limits."
    ),
    force_recompute: bool = Field(False, description="Recompute every task instead of reusing cached results."),
) -> RegisteredVersion:
    """Validate, train, evaluate, export to ONNX and edge bundles, register; unchanged steps reuse cached results."""
    stores = ConveyorStores.resolve()
    # A subflow: the batch is checked, and kept or quarantined, exactly as `validate` does; it raises if invalid.
    # It does not announce: a passed event would trigger another refit (deployments/prefect.yaml).
    data = validate(
        partition=partition,
        day=day,
        snapshot=snapshot,
        model_name=model_name,
        announce=False,
        force_recompute=force_recompute,
    )
    model = train_model(data, training, cluster)
    evaluation = evaluate_model(model, data, training.holdout_fraction)
    exported = export_onnx(model, {"model_name": model_name, "data_sha256": data.sha256})
    production = find_newest_partition(stores.landing_path)
    checked = check_onnx_parity(exported, model, data, training.holdout_fraction, parity, production)
    variants = []
    for target in edge_targets:
        variant = quantize_for_edge(exported, target)
        variants.append((variant, check_edge_accuracy(exported, variant, data, training.holdout_fraction, target)))
    candidate = Candidate(
        snapshot=data,
        params=training,
        model=model,
        evaluation=evaluation,
        exported=exported,
        parity=checked,
        edge=variants,
    )
    run_id = str(flow_run.id or "local")
    staged = reserve_model_version(stores.model_path, model_name, candidate, run_id)
    bundles = [
        build_edge_bundle(variant, target, model_name, staged.version, data.sha256, Path(checked.known_inputs))
        for (variant, _), target in zip(variants, edge_targets, strict=True)
    ]
    registered = register_model_version(staged, candidate, bundles, run_id)
    report_cache_use()
    return registered
