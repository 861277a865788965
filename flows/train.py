"""The train flow: train and evaluate either model family on one data file, on one process or across Dask workers."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks.settings import get_settings
from blocks.stores import ConveyorStores
from flows.refit import DEFAULT_CLUSTER, DEFAULT_TRAINING
from tasks.boosting import BoostingParams, evaluate_xgboost, train_xgboost
from tasks.cluster import ClusterSpec
from tasks.data import snapshot_partition
from tasks.evaluation import Metrics, evaluate_model
from tasks.training import TrainingParams, train_model
from tasks.validation import require_valid, validate_snapshot

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


@flow(name="train")
def train(
    data: str = Field(..., description="A telemetry parquet file to train on."),
    cluster: ClusterSpec = Field(DEFAULT_CLUSTER, description="Where training runs."),
    training: TrainingParams = Field(DEFAULT_TRAINING, description="Model and optimizer settings (torch)."),
    out: str | None = Field(None, description="Folder for the weights, checkpoints and plot."),
    family: ModelFamily = Field("torch", description="Model family: the torch MLP, or XGBoost's boosted trees."),
    boosting: BoostingParams = Field(DEFAULT_BOOSTING, description="Tree settings (xgboost)."),
) -> TrainingRun:
    """Snapshot and validate a data file, train on it (DDP or xgboost.dask across Dask workers when asked), evaluate."""
    stores = ConveyorStores.resolve()
    snapshot = snapshot_partition(Path(data), stores.data_path)
    require_valid(validate_snapshot(snapshot))
    workdir = Path(out) if out else get_settings().state_dir / "training" / str(flow_run.id or "local")
    if family == "xgboost":
        boosted = train_xgboost(snapshot, boosting, workdir, cluster)
        scored = evaluate_xgboost(boosted, snapshot, boosting.holdout_fraction, workdir)
        return TrainingRun(
            family=family,
            weights_path=boosted.model_path,
            weights_sha256=boosted.model_sha256,
            world_size=boosted.world_size,
            resumed_from_epoch=None,
            train_wall_s=boosted.wall_s,
            metrics=scored.metrics,
        )
    model = train_model(snapshot, training, workdir, cluster)
    evaluation = evaluate_model(model, snapshot, training.holdout_fraction, workdir)
    return TrainingRun(
        family=family,
        weights_path=model.weights_path,
        weights_sha256=model.weights_sha256,
        world_size=model.world_size,
        resumed_from_epoch=model.resumed_from_epoch,
        train_wall_s=model.wall_s,
        metrics=evaluation.metrics,
    )
