"""The refit pipeline: landed partition in, registered and ONNX-exported model version out."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from blocks.stores import ConveyorStores
from flows.validate import validate
from tasks.evaluation import evaluate_model
from tasks.export import check_onnx_parity, export_onnx
from tasks.registry import RegisteredVersion, open_staging_area, register_model_version
from tasks.training import TrainingParams, train_model

DEFAULT_MODEL_NAME = "failure-predictor"
DEFAULT_TRAINING = TrainingParams()


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
    model_name: Annotated[
        str, Field(description="Registry name of the model.", pattern=r"^[a-z0-9][a-z0-9-]*$")
    ] = DEFAULT_MODEL_NAME,
    parity_tolerance: Annotated[
        float, Field(description="Largest ONNX-vs-PyTorch probability difference accepted.", gt=0)
    ] = 1e-5,
) -> RegisteredVersion:
    """Snapshot, validate, train, evaluate, export to ONNX and register a new model version."""
    stores = ConveyorStores.resolve()
    run_id = str(flow_run.id or "local")
    # A subflow: the batch is checked, and kept or quarantined, exactly as `validate` does; it raises if invalid.
    data = validate(partition=partition, day=day, snapshot=snapshot, model_name=model_name)
    staging = open_staging_area(stores.model_path, model_name, run_id)
    model = train_model(data, training, staging)
    evaluation = evaluate_model(model, data, training.holdout_fraction, staging)
    exported = export_onnx(
        model,
        staging,
        {"model_name": model_name, "data_sha256": data.sha256, "flow_run_id": run_id},
    )
    parity = check_onnx_parity(exported, model, data, training.holdout_fraction, parity_tolerance)
    return register_model_version(staging, model_name, data, training, model, evaluation, exported, parity, run_id)
