"""Statistics of a batch against the training reference: null shares and per-feature PSI, reported, never failed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger
from pydantic import BaseModel

from tasks.caching import uncached_task
from tasks.data import Snapshot, snapshot_path
from tasks.modeling import NUMERIC_FEATURES
from tasks.registry import MANIFEST, list_versions

_BINS = 10  # deciles of the reference
_EPSILON = 1e-4  # stands in for an empty bin's share, so PSI stays finite


class StatisticWarning(BaseModel):
    """A statistic past its warning threshold."""

    statistic: str
    column: str
    value: float
    threshold: float


def find_reference(model_store: Path, data_store: Path, model_name: str | None = None) -> Snapshot | None:
    """The data snapshot of the newest registered model version (of ``model_name``, or of any model)."""
    versions = list_versions(model_store, model_name)
    if not versions:
        return None
    newest = max(versions, key=lambda v: (Path(v.path) / MANIFEST).stat().st_mtime_ns)
    path = snapshot_path(data_store, newest.data_sha256)
    if not path.is_file():
        return None
    return Snapshot(sha256=newest.data_sha256, path=str(path), source=newest.path, size_bytes=path.stat().st_size)


def population_stability(reference: pd.Series, current: pd.Series) -> float:
    """PSI of ``current`` against the deciles of ``reference`` (0: same distribution; above 0.2: a real shift)."""
    ref = reference.to_numpy(dtype=float, na_value=np.nan)
    cur = current.to_numpy(dtype=float, na_value=np.nan)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if not len(ref) or not len(cur):
        return 0.0
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, _BINS + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    actual = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    expected, actual = np.maximum(expected, _EPSILON), np.maximum(actual, _EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def statistic_warnings(
    frame: pd.DataFrame, reference: pd.DataFrame | None, psi_warning: float, null_share_warning: float
) -> list[StatisticWarning]:
    """Null shares above the reference's by more than the threshold, and features whose PSI passes its threshold."""
    warnings = []
    for column in frame.columns:
        share = float(frame[column].isna().mean()) if len(frame) else 0.0
        baseline = float(reference[column].isna().mean()) if reference is not None and column in reference else 0.0
        if share - baseline > null_share_warning:
            warnings.append(
                StatisticWarning(statistic="null share", column=str(column), value=share, threshold=null_share_warning)
            )
    if reference is None:
        return warnings
    for feature in NUMERIC_FEATURES:
        if (
            feature in frame
            and feature in reference
            and all(pd.api.types.is_numeric_dtype(f[feature]) for f in (frame, reference))
        ):
            psi = population_stability(reference[feature], frame[feature])
            if psi > psi_warning:
                warnings.append(StatisticWarning(statistic="PSI", column=feature, value=psi, threshold=psi_warning))
    return warnings


@uncached_task("Find training reference", why="looks up the model store")
def find_training_reference(model_store: Path, data_store: Path, model_name: str | None = None) -> Snapshot | None:
    """The snapshot the newest registered model was trained on: what new batches are compared with."""
    reference = find_reference(model_store, data_store, model_name)
    get_run_logger().info(
        "Training reference: %s", f"snapshot {reference.sha256[:12]}" if reference else "none (no model registered)"
    )
    return reference
