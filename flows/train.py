"""The train flow: train and evaluate on one data file, on one process or across Dask workers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from blocks.settings import get_settings
from blocks.stores import ConveyorStores
from flows.refit import DEFAULT_CLUSTER, DEFAULT_TRAINING
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
    data: Annotated[str, Field(description="A telemetry parquet file to train on.")],
    cluster: Annotated[ClusterSpec, Field(description="Where training runs.")] = DEFAULT_CLUSTER,
    training: Annotated[TrainingParams, Field(description="Model and optimizer settings.")] = DEFAULT_TRAINING,
    out: Annotated[str | None, Field(description="Folder for the weights, checkpoints and plot.")] = None,
) -> TrainingRun:
    """Snapshot and validate a data file, train on it (DDP across Dask workers when asked) and evaluate."""
    stores = ConveyorStores.resolve()
    snapshot = snapshot_partition(Path(data), stores.data_path)
    require_valid(validate_snapshot(snapshot))
    workdir = Path(out) if out else get_settings().state_dir / "training" / str(flow_run.id or "local")
    model = train_model(snapshot, training, workdir, cluster)
    evaluation = evaluate_model(model, snapshot, training.holdout_fraction, workdir)
    return TrainingRun(
        weights_path=model.weights_path,
        weights_sha256=model.weights_sha256,
        world_size=model.world_size,
        resumed_from_epoch=model.resumed_from_epoch,
        train_wall_s=model.wall_s,
        metrics=evaluation.metrics,
    )
