"""Rows as model inputs, following a model's feature encoding: numeric matrix, category codes, labels.

Shared by every model family (the torch MLP, XGBoost) and the ONNX graphs they become; numpy and pandas only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from conveyor.data.snapshots import Snapshot, split_holdout
from conveyor.schema.spec import DatasetSpec, FeatureEncoding, feature_encoding

NUMERIC_INPUT = "numeric"


def input_names(encoding: FeatureEncoding) -> list[str]:
    """A model's inputs in order: the numeric matrix, then one per categorical feature (named after it)."""
    return [NUMERIC_INPUT, *encoding.categorical]


def category_codes(values: pd.Series, categories: list[str]) -> np.ndarray:
    """A categorical column as int64 codes: a category's position plus one, 0 for anything unknown."""
    lookup = {name: code for code, name in enumerate(categories, start=1)}
    return values.astype(str).map(lambda name: lookup.get(name, 0)).to_numpy(np.int64, copy=True)


def encode_features(frame: pd.DataFrame, encoding: FeatureEncoding) -> tuple[np.ndarray, list[np.ndarray]]:
    """Raw columns as the model's inputs: float32 numeric features, and int64 codes per categorical feature."""
    numeric = frame[encoding.numeric].to_numpy(dtype=np.float32, copy=True)
    return numeric, [category_codes(frame[column], values) for column, values in encoding.categorical.items()]


def refusal_reasons(
    values: np.ndarray, missing: np.ndarray, ranges: Mapping[str, Sequence[float | None]]
) -> tuple[np.ndarray, np.ndarray]:
    """Why each row cannot be scored and the feature it names, its first bad one (None, None: it can be scored).

    ``values`` holds one float64 column per feature of ``ranges`` (min, max; None: unbounded), in its order, NaN where
    a value is not a number; ``missing`` is True where no value was given. A row's reason is the first check its first
    bad feature fails: missing, not a number, not finite, outside its range. Edge bundles and the model server refuse
    rows with the same checks and the same words.
    """
    names = list(ranges)
    low = np.array([-np.inf if bounds[0] is None else bounds[0] for bounds in ranges.values()], dtype=np.float64)
    high = np.array([np.inf if bounds[1] is None else bounds[1] for bounds in ranges.values()], dtype=np.float64)
    # One mask per check, in the order they are reported: (checks, rows, features), whole matrices at once.
    failing: np.ndarray = np.stack([missing, np.isnan(values), np.isinf(values), (values < low) | (values > high)])
    bad = np.asarray(failing.any(axis=0))
    rows = np.flatnonzero(bad.any(axis=1))
    reasons = np.full(len(values), None, dtype=object)
    features = np.full(len(values), None, dtype=object)
    if not len(rows):
        return reasons, features  # the usual case, and the words are not worth making for it
    words = np.array(
        [
            [f"missing value in {f}" for f in names],
            [f"non-numeric value in {f}" for f in names],
            [f"non-finite value in {f}" for f in names],
            [f"{f} outside [{lo:g}, {hi:g}]" for f, lo, hi in zip(names, low, high, strict=True)],
        ],
        dtype=object,
    )
    first_feature = bad[rows].argmax(axis=1)
    first_check = failing[:, rows, first_feature].argmax(axis=0)
    reasons[rows] = words[first_check, first_feature]
    features[rows] = np.array(names, dtype=object)[first_feature]
    return reasons, features


def encode_labels(frame: pd.DataFrame, encoding: FeatureEncoding) -> np.ndarray:
    """The label as float32, shape (rows, 1)."""
    return frame[encoding.label].to_numpy(dtype=np.float32, copy=True).reshape(-1, 1)


def training_encoding(snapshot: Snapshot, spec: DatasetSpec, holdout_fraction: float) -> FeatureEncoding:
    """The model's encoding: the spec's features; categories it leaves to learning come from the training rows."""
    learned = [c.column for c in spec.features.categorical if c.vocabulary == "learn"]
    if not learned:
        return feature_encoding(spec, {})
    rows = pd.read_parquet(snapshot.path, columns=list(dict.fromkeys([spec.entity, *learned])))
    train, _ = split_holdout(rows, holdout_fraction, spec.entity)
    return feature_encoding(spec, {column: train[column].astype(str).tolist() for column in learned})
