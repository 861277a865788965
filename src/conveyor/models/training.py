"""Training the failure model: one process or PyTorch DDP across Dask workers, resumable per epoch."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import numpy as np
import pandas as pd
import torch
import torch.distributed as torch_dist
from distributed import Client, get_worker
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker
from prefect import Task, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.schemas.objects import State, TaskRun
from pydantic import BaseModel, Field
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from conveyor.cache import Content, Descriptive, cached_task, task_output_dir
from conveyor.data.snapshots import Snapshot, split_holdout
from conveyor.io.files import sha256_file, write_atomically, write_text_atomically
from conveyor.models.cluster import ClusterSpec, dask_client, pick_ranks, rendezvous_address
from conveyor.models.features import encode_features, encode_labels, training_encoding
from conveyor.models.mlp import TabularMLP, save_weights
from conveyor.schema.spec import DatasetSpec, FeatureEncoding

CHECKPOINTS = "checkpoints"
WEIGHTS_FILE = "weights.pt"
_CHECKPOINT = re.compile(r"^epoch-(\d+)\.json$")
_POLL_S = 0.5
# How long a rank waits for its peers; a dead peer usually breaks the connection at once, this bounds the rest.
_RENDEZVOUS_TIMEOUT = dt.timedelta(minutes=5)


class WorkerLostError(RuntimeError):
    """A training rank's Dask worker died; the task retries from the last checkpoint."""


class TrainingParams(BaseModel):
    """How to train the MLP."""

    hidden_units: list[int] = Field([64, 32], description="Width of each hidden layer.", min_length=1)
    epochs: int = Field(12, ge=1, le=500, description="Passes over the training rows.")
    batch_size: int = Field(512, ge=8, description="Rows per gradient step, summed over all ranks.")
    learning_rate: float = Field(3e-3, gt=0, description="Adam step size.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty on the weights.")
    holdout_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of entities (machines, customers) held out for evaluation."
    )
    seed: int = Field(0, description="Seed of initialization and batch order.")


class TrainedModel(BaseModel):
    """Weights of a trained model and what it took to make them."""

    weights_path: Annotated[str, Content]
    weights_sha256: str
    hidden_units: list[int]
    encoding: FeatureEncoding = Field(description="How the model reads rows: its features and categories.")
    train_rows: int
    final_loss: float
    world_size: int = Field(description="Ranks that trained it.")
    resumed_from_epoch: Annotated[int | None, Descriptive] = Field(
        description="Checkpoint the last attempt started from, if any."
    )
    wall_s: Annotated[float, Descriptive]

    # The names XGBoost's BoostedModel uses: code that handles either family reads the model file through them.
    @property
    def model_path(self) -> str:
        """The weights file."""
        return self.weights_path

    @property
    def model_sha256(self) -> str:
        """SHA-256 of the weights file."""
        return self.weights_sha256


class _Logits(nn.Module):
    """The model's training view: DDP calls forward, and training wants logits, not probabilities."""

    def __init__(self, model: TabularMLP):
        super().__init__()
        self.model = model

    def forward(self, numeric: torch.Tensor, *codes: torch.Tensor) -> torch.Tensor:
        """Logits of the wrapped model."""
        return self.model.logits(numeric, *codes)


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


def _all_reduce(values: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        torch_dist.all_reduce(values)
    return values


def _latest_checkpoint(folder: Path) -> int:
    epochs = [int(m.group(1)) for p in folder.glob("epoch-*.json") if (m := _CHECKPOINT.match(p.name))]
    return max(epochs, default=0)


def _checkpoint(folder: Path, epoch: int, model: TabularMLP, optimizer: torch.optim.Optimizer, loss: float) -> None:
    """Weights and optimizer state of a finished epoch; the JSON beside it is written last and marks it complete."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
    write_atomically(folder / f"epoch-{epoch}.pt", lambda tmp: torch.save(state, tmp))
    write_text_atomically(folder / f"epoch-{epoch}.json", json.dumps({"epoch": epoch, "loss": loss}))


def train_rank(
    rank: int,
    world: int,
    rendezvous: str | None,
    snapshot_path: str,
    encoding: FeatureEncoding,
    params: TrainingParams,
    checkpoints: str,
) -> dict[str, Any]:
    """One rank of (DDP) training on its own shard; rank 0 checkpoints every epoch and returns the weights."""
    folder = Path(checkpoints)
    device = _device(rank)
    if world > 1:
        # Use the cores Dask gave this worker, not every core of the host (ranks may share one).
        torch.set_num_threads(get_worker().state.nthreads)
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch_dist.init_process_group(
            backend, init_method=rendezvous, rank=rank, world_size=world, timeout=_RENDEZVOUS_TIMEOUT
        )
    try:
        torch.manual_seed(params.seed)  # every rank starts from the same weights
        torch.use_deterministic_algorithms(True)
        train, _ = split_holdout(pd.read_parquet(snapshot_path), params.holdout_fraction, encoding.entity)
        shard = train.iloc[rank::world]
        numeric, codes = encode_features(shard, encoding)
        labels = encode_labels(shard, encoding)
        # Scaling from the whole training split, summed over the shards.
        moments = _all_reduce(
            torch.from_numpy(
                np.concatenate(
                    [[len(shard)], numeric.sum(0, dtype=np.float64), (numeric.astype(np.float64) ** 2).sum(0)]
                )
            ),
            world,
        )
        count, total, squares = moments[0], moments[1 : 1 + numeric.shape[1]], moments[1 + numeric.shape[1] :]
        mean = total / count
        std = (squares / count - mean**2).clamp(min=1e-12).sqrt()
        model = TabularMLP(params.hidden_units, encoding, mean.float(), std.float()).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
        start = _latest_checkpoint(folder)
        if start:
            state = torch.load(folder / f"epoch-{start}.pt", map_location=device, weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        network: nn.Module = DistributedDataParallel(_Logits(model)) if world > 1 else _Logits(model)
        features = torch.from_numpy(numeric).to(device)
        categories = [torch.from_numpy(c).to(device) for c in codes]
        targets = torch.from_numpy(labels).to(device)
        loss_fn = torch.nn.BCEWithLogitsLoss(reduction="sum")
        # Every rank must take the same number of steps, or DDP's all-reduce waits forever.
        steps = max(1, len(train) // params.batch_size)
        use_amp = device.type == "cuda"
        for epoch in range(start + 1, params.epochs + 1):
            network.train()
            order = np.random.default_rng([params.seed, epoch, rank]).permutation(len(shard))
            running = torch.zeros(2, dtype=torch.float64, device=device)
            for batch in np.array_split(order, steps):
                index = torch.from_numpy(batch).to(device)
                optimizer.zero_grad()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    scores = network(features[index], *(c[index] for c in categories))
                    loss = loss_fn(scores.float(), targets[index])
                (loss / max(len(batch), 1)).backward()
                optimizer.step()
                running += torch.tensor([loss.item(), len(batch)], dtype=torch.float64, device=device)
            running = _all_reduce(running, world)
            if rank == 0:
                _checkpoint(folder, epoch, model, optimizer, float(running[0] / running[1]))
        weights = {name: tensor.cpu().numpy() for name, tensor in model.state_dict().items()} if rank == 0 else {}
        return {"weights": weights, "resumed_from": start or None, "train_rows": len(train)}
    finally:
        if world > 1:
            torch_dist.destroy_process_group()


class _Progress:
    """Reports finished epochs (from the checkpoint folder) as log lines and a progress artifact."""

    def __init__(self, folder: Path, epochs: int, data_sha256: str, world: int):
        self.folder, self.epochs, self.reported = folder, epochs, _latest_checkpoint(folder)
        self.logger = get_run_logger()
        artifact = create_progress_artifact(
            100.0 * self.reported / epochs, description=f"Training on snapshot {data_sha256[:12]} with {world} rank(s)"
        )
        assert isinstance(artifact, UUID)  # the synchronous API, called from a synchronous task
        self.artifact = artifact
        if self.reported:
            self.logger.info("Resuming from the checkpoint of epoch %d", self.reported)

    def report(self) -> None:
        """Log every epoch finished since the last call."""
        while (self.folder / f"epoch-{self.reported + 1}.json").is_file():
            self.reported += 1
            loss = json.loads((self.folder / f"epoch-{self.reported}.json").read_text())["loss"]
            self.logger.info("epoch %d/%d: training log loss %.4f", self.reported, self.epochs, loss)
            update_progress_artifact(self.artifact, 100.0 * self.reported / self.epochs)

    @property
    def last_loss(self) -> float:
        """Training loss of the newest finished epoch."""
        return float(json.loads((self.folder / f"epoch-{self.reported}.json").read_text())["loss"])


def _on_dask(
    client: Client,
    cluster: ClusterSpec,
    snapshot: Snapshot,
    encoding: FeatureEncoding,
    params: TrainingParams,
    folder: Path,
    progress: _Progress,
) -> dict[str, Any]:
    """Run one rank per Dask worker, pinned, and fail the attempt as soon as one of their workers disappears."""
    world = cluster.workers
    ranks = pick_ranks(client, world)
    rendezvous = rendezvous_address(client, ranks[0])
    futures = [
        client.submit(
            train_rank,
            rank,
            world,
            rendezvous,
            snapshot.path,
            encoding,
            params,
            str(folder),
            workers=[address],
            allow_other_workers=False,
            pure=False,
        )
        for rank, address in enumerate(ranks)
    ]
    while not all(f.done() for f in futures):
        progress.report()
        alive = set(client.scheduler_info(n_workers=-1)["workers"])
        if lost := [a for a in ranks if a not in alive]:
            client.cancel(futures)
            raise WorkerLostError(
                f"Dask worker {lost[0]} (rank {ranks.index(lost[0])}) died during training; "
                f"retrying from the checkpoint of epoch {_latest_checkpoint(folder)}."
            )
        if failed := [f for f in futures if f.status == "error"]:
            client.cancel(futures)
            failed[0].result()  # raises the rank's own error
        time.sleep(_POLL_S)
    return dict(futures[0].result())


def _worth_retrying(task: Task[..., Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry when a rank's process or connection died, not when the data or parameters are wrong."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, WorkerLostError | KilledWorker | CommClosedError | torch_dist.DistBackendError)


@cached_task("Train model", retries=2, retry_delay_seconds=1, retry_condition_fn=_worth_retrying)
def train_model(
    snapshot: Snapshot, spec: DatasetSpec, params: TrainingParams, cluster: ClusterSpec | None = None
) -> TrainedModel:
    """Train the MLP (DDP across Dask workers when asked), checkpointing every epoch; retries resume from there."""
    cluster = cluster or ClusterSpec()
    encoding = training_encoding(snapshot, spec, params.holdout_fraction)
    workdir = task_output_dir()  # one folder per task run: its retries find the checkpoints there
    folder = workdir / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    progress = _Progress(folder, params.epochs, snapshot.sha256, cluster.workers)
    started = time.perf_counter()
    if cluster.distributed:
        with dask_client(cluster) as client:
            result = _on_dask(client, cluster, snapshot, encoding, params, folder, progress)
    else:
        with ThreadPoolExecutor(1) as pool:
            future: Future[dict[str, Any]] = pool.submit(
                train_rank, 0, 1, None, snapshot.path, encoding, params, str(folder)
            )
            while not future.done():
                progress.report()
                time.sleep(_POLL_S)
            result = future.result()
    progress.report()
    model = TabularMLP(params.hidden_units, encoding)
    model.load_state_dict({name: torch.from_numpy(array) for name, array in result["weights"].items()})
    weights = workdir / WEIGHTS_FILE
    write_atomically(weights, lambda tmp: save_weights(model, tmp))
    return TrainedModel(
        weights_path=str(weights),
        weights_sha256=sha256_file(weights),
        hidden_units=params.hidden_units,
        encoding=encoding,
        train_rows=result["train_rows"],
        final_loss=progress.last_loss,
        world_size=cluster.workers,
        resumed_from_epoch=result["resumed_from"],
        wall_s=time.perf_counter() - started,
    )
