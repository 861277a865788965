"""The train flow: train and evaluate either model family on one data file, on one process or across Dask workers."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import BaseModel, Field

from conveyor.blocks import ConveyorStores
from conveyor.cache.outputs import copy_outputs
from conveyor.cache.report import reporting_cache_use
from conveyor.data.snapshots import find_newest_partition
from conveyor.export.families import ModelFamily, build_model
from conveyor.export.onnx import ParityThresholds
from conveyor.flows.refit import DEFAULT_BOOSTING, DEFAULT_CLUSTER, DEFAULT_PARITY, DEFAULT_TRAINING
from conveyor.flows.validate import validate
from conveyor.models.boosting import BoostingParams
from conveyor.models.cluster import ClusterSpec
from conveyor.models.evaluation import Metrics
from conveyor.models.training import TrainingParams
from conveyor.schema.catalog import find_spec


class TrainingRun(BaseModel):
    """What one training run made."""

    family: ModelFamily
    weights_path: str = Field(description="The model file: torch weights, or the XGBoost booster as JSON.")
    weights_sha256: str
    world_size: int
    resumed_from_epoch: int | None
    train_wall_s: float
    metrics: Metrics
    onnx_path: str = Field(description="The model as ONNX, its parity with the trained model checked.")


@flow(name="train")
def train(
    data: str | None = Field(
        None, description="A parquet file to train on, checked where it lies; empty: the newest landed partition."
    ),
    snapshot: str | None = Field(None, description="SHA-256 of a snapshot in the data store; overrides data."),
    cluster: ClusterSpec = Field(DEFAULT_CLUSTER, description="Where training runs."),
    training: TrainingParams = Field(DEFAULT_TRAINING, description="Model and optimizer settings (torch)."),
    out: str | None = Field(None, description="Folder to copy the model file and the evaluation plot into."),
    force_recompute: bool = Field(False, description="Train again instead of reusing a cached model."),
    family: ModelFamily = Field("torch", description="Model family: the torch MLP, or XGBoost's boosted trees."),
    boosting: BoostingParams = Field(DEFAULT_BOOSTING, description="Tree settings (xgboost)."),
    dataset: str | None = Field(
        None, description="Dataset spec by name (contract, features); empty: CONVEYOR_DATASET (telemetry)."
    ),
    parity: ParityThresholds = Field(DEFAULT_PARITY, description="How closely ONNX Runtime must reproduce the model."),
) -> TrainingRun:
    """Validate a batch, train on it (DDP or xgboost.dask on Dask when asked), evaluate, export to ONNX with parity."""
    spec = find_spec(dataset)
    production = find_newest_partition(ConveyorStores.resolve().landing_path, spec)
    with reporting_cache_use():
        # The same gate as refit (reference, quarantine, report), without an event: nothing should react to it.
        batch = validate(
            file=data, snapshot=snapshot, announce=False, force_recompute=force_recompute, dataset=spec.name
        )
        built = build_model(
            batch, spec, family, training, boosting, cluster, parity, production, {"data_sha256": batch.sha256}
        )
        model = built.model
        kept = copy_outputs([model.model_path, built.evaluation.plot_path], Path(out))[0] if out else model.model_path
        return TrainingRun(
            family=family,
            weights_path=kept,
            weights_sha256=model.model_sha256,
            world_size=model.world_size,
            resumed_from_epoch=model.resumed_from_epoch,
            train_wall_s=model.wall_s,
            metrics=built.evaluation.metrics,
            onnx_path=built.exported.path,
        )
