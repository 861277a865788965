"""Training is reproducible and leaves weights that load without unpickling objects."""

from __future__ import annotations

from pathlib import Path

import torch

from conveyor.data.snapshots import Snapshot
from conveyor.models.mlp import TabularMLP, load_weights
from conveyor.models.training import TrainedModel, TrainingParams, train_model
from conveyor.schema.telemetry import TELEMETRY
from tests.fixtures.models import FAST_TRAINING


def test_same_snapshot_and_seed_give_bit_identical_weights(
    snapshot: Snapshot, trained: TrainedModel, recompute: None
) -> None:
    again = train_model(snapshot, TELEMETRY, FAST_TRAINING)
    assert again.weights_path != trained.weights_path  # trained anew, not reused from the cache
    assert again.weights_sha256 == trained.weights_sha256


def test_another_seed_gives_other_weights(snapshot: Snapshot, trained: TrainedModel) -> None:
    other = train_model(snapshot, TELEMETRY, TrainingParams(epochs=1, seed=1))
    assert other.weights_sha256 != trained.weights_sha256


def test_loss_falls_below_the_base_rate_entropy(trained: TrainedModel) -> None:
    # Predicting the base rate (~20 % failures) costs about 0.5 nats; a model that learned must do better.
    assert trained.final_loss < 0.4


def test_weights_file_is_a_plain_tensor_dict(trained: TrainedModel) -> None:
    state = torch.load(trained.weights_path, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    loaded = load_weights(Path(trained.weights_path), trained.hidden_units, trained.encoding)
    assert isinstance(loaded, TabularMLP)
