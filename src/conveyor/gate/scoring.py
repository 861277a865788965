"""The gate's evidence from ONNX Runtime: both versions' scores on the same held-out rows, and their latency."""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.export.runtime import onnx_inputs, onnx_model, onnx_run, onnx_session, stored_output_error
from conveyor.registry.store import RegisteredVersion
from conveyor.schema.spec import DatasetSpec

_WARM_UP_CALLS = 20
_BATCH = 256
_BATCH_REPEATS = 20


class HeldOutRows(NamedTuple):
    """The challenger's held-out rows as the statistics need them (labels, entities, slices) and both models' scores."""

    labels: np.ndarray
    entities: np.ndarray
    slices: np.ndarray | None
    challenger: np.ndarray
    champion: np.ndarray | None


class Latency(BaseModel):
    """How fast a version answers under ONNX Runtime on this host."""

    p50_ms_batch_1: float = Field(description="Median latency of one row, in ms.")
    p99_ms_batch_1: float = Field(description="99th-percentile latency of one row, in ms.")
    rows_per_s_batch_256: float = Field(description="Rows scored per second in batches of 256.")


def held_out_rows(snapshot: Snapshot, spec: DatasetSpec, holdout_fraction: float) -> pd.DataFrame:
    """The rows of a snapshot its model never trained on (the same split of entities training made)."""
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction, spec.entity)
    return holdout


def score(version: RegisteredVersion, rows: pd.DataFrame, threads: int = 0) -> np.ndarray:
    """A version's probabilities for raw rows, from its registered ONNX file."""
    path = Path(version.onnx_path)
    return onnx_run(onnx_session(path, threads), onnx_inputs(rows, onnx_model(path).encoding))


def paired_scores(
    challenger: RegisteredVersion, champion: RegisteredVersion | None, rows: pd.DataFrame, spec: DatasetSpec
) -> HeldOutRows:
    """Both versions scored on the same rows, so every comparison of them is paired."""
    return HeldOutRows(
        labels=rows[spec.label].to_numpy(dtype=np.int8),
        entities=rows[spec.entity].to_numpy(),
        slices=rows[spec.slice_by].astype(str).to_numpy() if spec.slice_by else None,
        challenger=score(challenger, rows),
        champion=score(champion, rows) if champion else None,
    )


def known_input_error(version: RegisteredVersion) -> tuple[int, float]:
    """Rows of the version's stored known inputs, and the largest distance of its outputs from the stored ones."""
    path = Path(version.onnx_path)
    return stored_output_error(onnx_session(path), Path(version.path), onnx_model(path).encoding)


def measure_latency(version: RegisteredVersion, rows: pd.DataFrame, threads: int, calls: int) -> Latency:
    """Batch-1 latency percentiles and batch-256 throughput of a version's ONNX session (inputs prepared first)."""
    path = Path(version.onnx_path)
    session = onnx_session(path, threads)
    encoding = onnx_model(path).encoding
    singles = [onnx_inputs(rows.iloc[[i % len(rows)]], encoding) for i in range(calls)]
    batch = onnx_inputs(rows.iloc[np.arange(_BATCH) % len(rows)], encoding)
    for inputs in singles[:_WARM_UP_CALLS]:
        onnx_run(session, inputs)
    timings = []
    for inputs in singles:
        started = time.perf_counter()
        onnx_run(session, inputs)
        timings.append(time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(_BATCH_REPEATS):
        onnx_run(session, batch)
    batch_s = time.perf_counter() - started
    p50, p99 = np.percentile(timings, [50, 99]) * 1000
    return Latency(
        p50_ms_batch_1=float(p50), p99_ms_batch_1=float(p99), rows_per_s_batch_256=_BATCH * _BATCH_REPEATS / batch_s
    )
