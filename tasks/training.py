"""Training the failure model on a snapshot, with per-epoch logs and a progress artifact."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import numpy as np
import torch
from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from pydantic import BaseModel, Field

from tasks.data import Snapshot, read_snapshot, split_holdout
from tasks.files import sha256_file
from tasks.modeling import FailureModel, encode_features, encode_labels, save_weights


class TrainingParams(BaseModel):
    """How to train the failure model."""

    hidden_units: list[int] = Field([64, 32], description="Width of each hidden layer.", min_length=1)
    epochs: int = Field(12, ge=1, le=500, description="Passes over the training rows.")
    batch_size: int = Field(512, ge=8, description="Rows per gradient step.")
    learning_rate: float = Field(3e-3, gt=0, description="Adam step size.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty on the weights.")
    holdout_fraction: float = Field(0.2, gt=0, lt=1, description="Share of machines held out for evaluation.")
    seed: int = Field(0, description="Seed of initialization and batch order.")


class TrainedModel(BaseModel):
    """Weights of a trained model and what it took to make them."""

    weights_path: str
    weights_sha256: str
    hidden_units: list[int]
    train_rows: int
    final_loss: float


@task(name="Train model")
def train_model(snapshot: Snapshot, params: TrainingParams, workdir: Path) -> TrainedModel:
    """Train the MLP on the snapshot's training split; same inputs and seed give the same weights."""
    logger = get_run_logger()
    train, _ = split_holdout(read_snapshot(snapshot), params.holdout_fraction)
    numeric, codes = encode_features(train)
    labels = encode_labels(train)

    torch.manual_seed(params.seed)
    torch.use_deterministic_algorithms(True)
    model = FailureModel(
        params.hidden_units,
        mean=torch.from_numpy(numeric.mean(axis=0)),
        std=torch.from_numpy(numeric.std(axis=0).clip(min=1e-6)),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    tensors = [torch.from_numpy(a) for a in (numeric, codes, labels)]
    order = np.random.default_rng(params.seed)
    progress = create_progress_artifact(0.0, description=f"Training on {len(train)} rows")
    assert isinstance(progress, UUID)  # the synchronous API, called from a synchronous task

    loss = float("nan")
    for epoch in range(1, params.epochs + 1):
        model.train()
        total = 0.0
        for batch in np.array_split(order.permutation(len(train)), max(1, len(train) // params.batch_size)):
            index = torch.from_numpy(batch)
            optimizer.zero_grad()
            batch_loss = loss_fn(model.logits(tensors[0][index], tensors[1][index]), tensors[2][index])
            batch_loss.backward()
            optimizer.step()
            total += batch_loss.item() * len(batch)
        loss = total / len(train)
        logger.info("epoch %d/%d: training log loss %.4f", epoch, params.epochs, loss)
        update_progress_artifact(progress, 100.0 * epoch / params.epochs)

    workdir.mkdir(parents=True, exist_ok=True)
    weights = workdir / "weights.pt"
    save_weights(model, weights)
    return TrainedModel(
        weights_path=str(weights),
        weights_sha256=sha256_file(weights),
        hidden_units=params.hidden_units,
        train_rows=len(train),
        final_loss=loss,
    )
