"""The tabular MLP: raw rows in, the probability of label 1 out, preprocessing inside the network.

Its inputs follow the model's feature encoding (conveyor.schema.spec.FeatureEncoding): one float32 matrix of the
numeric features, standardized inside the network, and one int64 vector of codes per categorical feature, each
embedded (code 0 stands for every category the training rows never held).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from conveyor.models.features import encode_features
from conveyor.schema.spec import FeatureEncoding

_EMBEDDING_DIM = 3


class TabularMLP(nn.Module):
    """An MLP over standardized numeric features and one embedding per categorical feature."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        hidden_units: list[int],
        encoding: FeatureEncoding,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ):
        super().__init__()
        width = len(encoding.numeric)
        # Buffers, not parameters: scaling travels with the weights and into the ONNX graph.
        self.register_buffer("mean", mean if mean is not None else torch.zeros(width))
        self.register_buffer("std", std if std is not None else torch.ones(width))
        self.embeddings = nn.ModuleList(
            nn.Embedding(len(categories) + 1, _EMBEDDING_DIM) for categories in encoding.categorical.values()
        )
        layers: list[nn.Module] = []
        fan_in = width + _EMBEDDING_DIM * len(self.embeddings)
        for units in hidden_units:
            layers += [nn.Linear(fan_in, units), nn.ReLU()]
            fan_in = units
        layers.append(nn.Linear(fan_in, 1))
        self.mlp = nn.Sequential(*layers)

    def logits(self, numeric: torch.Tensor, *codes: torch.Tensor) -> torch.Tensor:
        """Unnormalized scores, shape (batch, 1)."""
        scaled = (numeric - self.mean) / self.std
        embedded = [embedding(code) for embedding, code in zip(self.embeddings, codes, strict=True)]
        return self.mlp(torch.cat([scaled, *embedded], dim=1))

    def forward(self, numeric: torch.Tensor, *codes: torch.Tensor) -> torch.Tensor:
        """Probability of label 1, shape (batch, 1)."""
        return torch.sigmoid(self.logits(numeric, *codes))


def predict(model: TabularMLP, frame: pd.DataFrame, encoding: FeatureEncoding) -> np.ndarray:
    """Probabilities of label 1 for raw rows, shape (rows,)."""
    numeric, codes = encode_features(frame, encoding)
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(numeric), *map(torch.from_numpy, codes)).numpy().ravel()


def save_weights(model: TabularMLP, path: Path) -> None:
    """Write the weights (a plain tensor dict, loadable with weights_only=True)."""
    # Through a file object: torch.save names the archive after a path's stem, which would vary the bytes.
    with path.open("wb") as handle:
        torch.save(model.state_dict(), handle)


def load_weights(path: Path, hidden_units: list[int], encoding: FeatureEncoding) -> TabularMLP:
    """Rebuild a model from its weights file without unpickling arbitrary objects."""
    model = TabularMLP(hidden_units, encoding)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    model.eval()
    return model
