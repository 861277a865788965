"""The train flow: train and evaluate either model family on one data file, on one process or across Dask workers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow
from pydantic import BaseModel, Field

from conveyor.blocks import ConveyorStores
from conveyor.cache.outputs import copy_outputs
from conveyor.cache.report import reporting_cache_use
from conveyor.data.snapshots import Snapshot, find_newest_partition
from conveyor.export.onnx import ParityThresholds, check_onnx_parity, export_onnx
from conveyor.export.xgboost import check_xgboost_parity, export_xgboost
from conveyor.flows.refit import DEFAULT_CLUSTER, DEFAULT_PARITY, DEFAULT_TRAINING
from conveyor.flows.validate import validate
from conveyor.models.boosting import BoostingParams, evaluate_xgboost, train_xgboost
from conveyor.models.cluster import ClusterSpec
from conveyor.models.evaluation import Metrics, evaluate_model
from conveyor.models.training import TrainingParams, train_model
from conveyor.schema.catalog import find_spec
from conveyor.schema.spec import DatasetSpec

ModelFamily = Literal["torch", "xgboost"]
DEFAULT_BOOSTING = BoostingParams()


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
        if family == "xgboost":
            return _train_xgboost(batch, spec, boosting, cluster, parity, production, out)
        return _train_torch(batch, spec, training, cluster, parity, production, out)


def _train_xgboost(
    snapshot: Snapshot,
    spec: DatasetSpec,
    boosting: BoostingParams,
    cluster: ClusterSpec,
    parity: ParityThresholds,
    production: Path | None,
    out: str | None,
) -> TrainingRun:
    boosted = train_xgboost(snapshot, spec, boosting, cluster)
    scored = evaluate_xgboost(boosted, snapshot, boosting.holdout_fraction)
    exported = export_xgboost(boosted, {"data_sha256": snapshot.sha256})
    check_xgboost_parity(exported, boosted, snapshot, boosting.holdout_fraction, parity, production)
    kept = copy_outputs([boosted.model_path, scored.plot_path], Path(out))[0] if out else boosted.model_path
    return TrainingRun(
        family="xgboost",
        weights_path=kept,
        weights_sha256=boosted.model_sha256,
        world_size=boosted.world_size,
        resumed_from_epoch=None,
        train_wall_s=boosted.wall_s,
        metrics=scored.metrics,
        onnx_path=exported.path,
    )


def _train_torch(
    snapshot: Snapshot,
    spec: DatasetSpec,
    training: TrainingParams,
    cluster: ClusterSpec,
    parity: ParityThresholds,
    production: Path | None,
    out: str | None,
) -> TrainingRun:
    model = train_model(snapshot, spec, training, cluster)
    evaluation = evaluate_model(model, snapshot, training.holdout_fraction)
    exported = export_onnx(model, {"data_sha256": snapshot.sha256})
    check_onnx_parity(exported, model, snapshot, training.holdout_fraction, parity, production)
    weights = copy_outputs([model.weights_path, evaluation.plot_path], Path(out))[0] if out else model.weights_path
    return TrainingRun(
        family="torch",
        weights_path=weights,
        weights_sha256=model.weights_sha256,
        world_size=model.world_size,
        resumed_from_epoch=model.resumed_from_epoch,
        train_wall_s=model.wall_s,
        metrics=evaluation.metrics,
        onnx_path=exported.path,
    )
