"""The failure model: raw telemetry in, failure probability out, preprocessing inside the network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from conveyor.schema.telemetry import CATEGORY_FEATURE, LABEL, MACHINE_MODELS, NUMERIC_FEATURES

# Index 0 is kept for machine models the training data never saw.
CATEGORY_VOCABULARY = ("<unknown>", *MACHINE_MODELS)
INPUT_NAMES = ("numeric", CATEGORY_FEATURE)
OUTPUT_NAME = "failure_probability"
_EMBEDDING_DIM = 3


class FailureModel(nn.Module):
    """An MLP over standardized sensors and an embedded machine model."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, hidden_units: list[int], mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        width = len(NUMERIC_FEATURES)
        # Buffers, not parameters: scaling travels with the weights and into the ONNX graph.
        self.register_buffer("mean", mean if mean is not None else torch.zeros(width))
        self.register_buffer("std", std if std is not None else torch.ones(width))
        self.embedding = nn.Embedding(len(CATEGORY_VOCABULARY), _EMBEDDING_DIM)
        layers: list[nn.Module] = []
        fan_in = width + _EMBEDDING_DIM
        for units in hidden_units:
            layers += [nn.Linear(fan_in, units), nn.ReLU()]
            fan_in = units
        layers.append(nn.Linear(fan_in, 1))
        self.mlp = nn.Sequential(*layers)

    def logits(self, numeric: torch.Tensor, machine_model: torch.Tensor) -> torch.Tensor:
        """Unnormalized failure scores, shape (batch, 1)."""
        scaled = (numeric - self.mean) / self.std
        return self.mlp(torch.cat([scaled, self.embedding(machine_model)], dim=1))

    def forward(self, numeric: torch.Tensor, machine_model: torch.Tensor) -> torch.Tensor:
        """Failure probability within 7 days, shape (batch, 1)."""
        return torch.sigmoid(self.logits(numeric, machine_model))


def encode_features(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Raw telemetry columns as the model's two inputs (float32 sensors, int64 category codes)."""
    numeric = frame[list(NUMERIC_FEATURES)].to_numpy(dtype=np.float32, copy=True)
    lookup = {name: code for code, name in enumerate(CATEGORY_VOCABULARY)}
    codes = frame[CATEGORY_FEATURE].astype(str).map(lambda name: lookup.get(name, 0)).to_numpy(np.int64, copy=True)
    return numeric, codes


def encode_labels(frame: pd.DataFrame) -> np.ndarray:
    """The label as float32, shape (rows, 1)."""
    return frame[LABEL].to_numpy(dtype=np.float32, copy=True).reshape(-1, 1)


def predict(model: FailureModel, frame: pd.DataFrame) -> np.ndarray:
    """Failure probabilities for telemetry rows, shape (rows,)."""
    numeric, codes = encode_features(frame)
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(numeric), torch.from_numpy(codes)).numpy().ravel()


def save_weights(model: FailureModel, path: Path) -> None:
    """Write the weights (a plain tensor dict, loadable with weights_only=True)."""
    # Through a file object: torch.save names the archive after a path's stem, which would vary the bytes.
    with path.open("wb") as handle:
        torch.save(model.state_dict(), handle)


def load_weights(path: Path, hidden_units: list[int]) -> FailureModel:
    """Rebuild a model from its weights file without unpickling arbitrary objects."""
    model = FailureModel(hidden_units)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    return model
