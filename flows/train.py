"""The train flow: train and evaluate on one data file, on one process or across Dask workers."""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from pydantic import BaseModel, Field

from blocks.stores import ConveyorStores
from flows.refit import DEFAULT_CLUSTER, DEFAULT_TRAINING
from tasks.caching import copy_outputs, report_cache_use
from tasks.cluster import ClusterSpec
from tasks.data import snapshot_partition
from tasks.evaluation import Metrics, evaluate_model
from tasks.training import TrainingParams, train_model
from tasks.validation import require_valid, validate_snapshot


class TrainingRun(BaseModel):
    """What one training run made."""

    weights_path: str
    weights_sha256: str
    world_size: int
    resumed_from_epoch: int | None
    train_wall_s: float
    metrics: Metrics


@flow(name="train")
def train(
    data: str = Field(..., description="A telemetry parquet file to train on."),
    cluster: ClusterSpec = Field(DEFAULT_CLUSTER, description="Where training runs."),
    training: TrainingParams = Field(DEFAULT_TRAINING, description="Model and optimizer settings."),
    out: str | None = Field(None, description="Folder to copy the weights and the evaluation plot into."),
    force_recompute: bool = Field(False, description="Train again instead of reusing a cached model."),
) -> TrainingRun:
    """Snapshot and validate a data file, train on it (DDP across Dask workers when asked) and evaluate."""
    stores = ConveyorStores.resolve()
    snapshot = snapshot_partition(Path(data), stores.data_path)
    require_valid(validate_snapshot(snapshot))
    model = train_model(snapshot, training, cluster)
    evaluation = evaluate_model(model, snapshot, training.holdout_fraction)
    weights = copy_outputs([model.weights_path, evaluation.plot_path], Path(out))[0] if out else model.weights_path
    report_cache_use()
    return TrainingRun(
        weights_path=weights,
        weights_sha256=model.weights_sha256,
        world_size=model.world_size,
        resumed_from_epoch=model.resumed_from_epoch,
        train_wall_s=model.wall_s,
        metrics=evaluation.metrics,
    )
