"""Statistics of a batch against the training reference: null shares and per-feature PSI, reported, never failed.

What the statistics need of a reference (its null shares and each feature's decile bins) is its profile: computed
once per reference snapshot and kept beside it in the data store as JSON, so later runs never re-read the reference.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel

from conveyor.data.snapshots import Snapshot, read_snapshot
from conveyor.io.files import write_text_atomically

_BINS = 10  # deciles of the reference
_EPSILON = 1e-4  # stands in for an empty bin's share, so PSI stays finite
PROFILE_SUFFIX = ".profile.json"
_LOG = logging.getLogger("conveyor.statistics")


class StatisticWarning(BaseModel):
    """A statistic past its warning threshold."""

    statistic: str
    column: str
    value: float
    threshold: float


class FeatureBins(BaseModel):
    """A numeric feature of the reference: its inner decile edges and the share of its values in each bin."""

    edges: list[float]
    shares: list[float]


class ReferenceProfile(BaseModel):
    """All the statistics need of a reference snapshot, keyed by its content hash."""

    sha256: str
    bins: int = _BINS
    # The numeric features profiled (the dataset spec's): another spec's profile of the same bytes is recomputed.
    numeric_features: list[str] = []
    rows: int
    null_shares: dict[str, float]
    features: dict[str, FeatureBins]


def _finite(values: pd.Series) -> np.ndarray:
    array = values.to_numpy(dtype=float, na_value=np.nan)
    return array[np.isfinite(array)]


def feature_bins(reference: pd.Series) -> FeatureBins | None:
    """The deciles of a reference feature and its share in each bin; None when it has no finite value."""
    ref = _finite(reference)
    if not len(ref):
        return None
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, _BINS + 1)[1:-1]))
    shares = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    return FeatureBins(edges=edges.tolist(), shares=shares.tolist())


def stability_against(bins: FeatureBins, current: pd.Series) -> float:
    """PSI of ``current`` against a reference feature's bins (0: same distribution; above 0.2: a real shift)."""
    cur = _finite(current)
    if not len(cur):
        return 0.0
    edges = np.asarray(bins.edges)
    actual = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    expected, actual = np.maximum(np.asarray(bins.shares), _EPSILON), np.maximum(actual, _EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def population_stability(reference: pd.Series, current: pd.Series) -> float:
    """PSI of ``current`` against the deciles of ``reference``."""
    bins = feature_bins(reference)
    return stability_against(bins, current) if bins is not None else 0.0


def profile_frame(frame: pd.DataFrame, sha256: str, numeric_features: list[str]) -> ReferenceProfile:
    """The profile of a reference's rows: every column's null share and every numeric feature's bins."""
    features = {
        feature: bins
        for feature in numeric_features
        if feature in frame
        and pd.api.types.is_numeric_dtype(frame[feature])
        and (bins := feature_bins(frame[feature])) is not None
    }
    null_shares = {str(c): float(frame[c].isna().mean()) if len(frame) else 0.0 for c in frame.columns}
    return ReferenceProfile(
        sha256=sha256, numeric_features=numeric_features, rows=len(frame), null_shares=null_shares, features=features
    )


def profile_path(reference: Snapshot) -> Path:
    """Where a reference's profile is kept: beside its snapshot, named by the same content hash."""
    return Path(reference.path).with_name(f"{reference.sha256}{PROFILE_SUFFIX}")


def reference_profile(reference: Snapshot, numeric_features: list[str]) -> ReferenceProfile:
    """The reference's profile from beside its snapshot; computed from its rows and kept there when missing or stale."""
    path = profile_path(reference)
    try:
        kept = ReferenceProfile.model_validate_json(path.read_bytes())
        if (kept.sha256, kept.bins, kept.numeric_features) == (reference.sha256, _BINS, numeric_features):
            return kept
    except (OSError, ValueError):
        pass  # not computed yet, or unreadable: compute it again
    profile = profile_frame(read_snapshot(reference), reference.sha256, numeric_features)
    try:
        write_text_atomically(path, profile.model_dump_json(indent=1))
    except OSError as error:  # a read-only data store only costs the next run a re-read
        _LOG.warning("Could not keep the reference profile at %s: %s", path, error)
    return profile


def statistic_warnings(
    frame: pd.DataFrame, reference: ReferenceProfile | None, psi_warning: float, null_share_warning: float
) -> list[StatisticWarning]:
    """Null shares above the reference's by more than the threshold, and features whose PSI passes its threshold."""
    warnings = []
    for column in frame.columns:
        share = float(frame[column].isna().mean()) if len(frame) else 0.0
        baseline = reference.null_shares.get(str(column), 0.0) if reference is not None else 0.0
        if share - baseline > null_share_warning:
            warnings.append(
                StatisticWarning(statistic="null share", column=str(column), value=share, threshold=null_share_warning)
            )
    if reference is None:
        return warnings
    for feature, bins in reference.features.items():
        if feature in frame and pd.api.types.is_numeric_dtype(frame[feature]):
            psi = stability_against(bins, frame[feature])
            if psi > psi_warning:
                warnings.append(StatisticWarning(statistic="PSI", column=feature, value=psi, threshold=psi_warning))
    return warnings
