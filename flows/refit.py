"""The refit pipeline: landed partition in, registered and ONNX-exported model version out."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from blocks.stores import ConveyorStores
from flows.validate import validate
from tasks.cluster import ClusterSpec
from tasks.edge import EdgeTarget, build_edge_bundle, check_edge_accuracy, quantize_for_edge
from tasks.evaluation import evaluate_model
from tasks.export import ParityThresholds, check_onnx_parity, export_onnx
from tasks.registry import Candidate, RegisteredVersion, register_model_version, reserve_model_version
from tasks.training import TrainingParams, train_model

DEFAULT_MODEL_NAME = "failure-predictor"
DEFAULT_TRAINING = TrainingParams()
DEFAULT_CLUSTER = ClusterSpec()
DEFAULT_PARITY = ParityThresholds()
DEFAULT_EDGE_TARGETS = [EdgeTarget()]


@flow(name="refit", log_prints=True)
def refit(
    day: Annotated[
        dt.date | None, Field(description="Day of the landed partition to train on; empty: the newest one.")
    ] = None,
    partition: Annotated[
        str | None, Field(description="A landed file, by name in the landing folder or by path; overrides day.")
    ] = None,
    snapshot: Annotated[
        str | None,
        Field(description="SHA-256 of a snapshot in the data store (e.g. from a validation event); overrides both."),
    ] = None,
    training: Annotated[TrainingParams, Field(description="Model and optimizer settings.")] = DEFAULT_TRAINING,
    cluster: Annotated[
        ClusterSpec, Field(description="Train in-process (1 worker), on a local Dask cluster, or on one by address.")
    ] = DEFAULT_CLUSTER,
    model_name: Annotated[
        str, Field(description="Registry name of the model.", pattern=r"^[a-z0-9][a-z0-9-]*$")
    ] = DEFAULT_MODEL_NAME,
    parity: Annotated[
        ParityThresholds, Field(description="How closely ONNX Runtime must reproduce PyTorch.")
    ] = DEFAULT_PARITY,
    edge_targets: Annotated[
        list[EdgeTarget], Field(description="Devices to build a bundle for, and their accuracy limits.")
    ] = DEFAULT_EDGE_TARGETS,
) -> RegisteredVersion:
    """Snapshot, validate, train, evaluate, export to ONNX and edge bundles, and register a new model version."""
    stores = ConveyorStores.resolve()
    run_id = str(flow_run.id or "local")
    # A subflow: the batch is checked, and kept or quarantined, exactly as `validate` does; it raises if invalid.
    data = validate(partition=partition, day=day, snapshot=snapshot, model_name=model_name)
    staged = reserve_model_version(stores.model_path, model_name, run_id)
    workdir = Path(staged.staging)
    model = train_model(data, training, workdir, cluster)
    evaluation = evaluate_model(model, data, training.holdout_fraction, workdir)
    exported = export_onnx(
        model,
        workdir,
        {"model_name": model_name, "model_version": str(staged.version), "data_sha256": data.sha256},
    )
    checked = check_onnx_parity(exported, model, data, training.holdout_fraction, parity, stores.landing_path)
    edge = []
    for target in edge_targets:
        variant = quantize_for_edge(exported, target, workdir)
        accuracy = check_edge_accuracy(exported, variant, data, training.holdout_fraction, target)
        edge.append(
            (
                build_edge_bundle(variant, target, model_name, staged.version, data.sha256, checked.known_inputs),
                accuracy,
            )
        )
    candidate = Candidate(
        snapshot=data,
        params=training,
        model=model,
        evaluation=evaluation,
        exported=exported,
        parity=checked,
        edge=edge,
    )
    return register_model_version(staged, candidate, run_id)
