"""ONNX export and the parity gate that proves ONNX Runtime predicts what PyTorch predicts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from onnx import TensorProto, helper
from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from conveyor.cache import Content, cached_task, task_output_dir
from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.io.files import sha256_file, write_atomically
from conveyor.models.mlp import (
    CATEGORY_VOCABULARY,
    INPUT_NAMES,
    OUTPUT_NAME,
    FailureModel,
    encode_features,
    load_weights,
    predict,
)
from conveyor.models.training import TrainedModel
from conveyor.schema.telemetry import CATEGORY_FEATURE, NUMERIC_FEATURES

OPSET = 18
# LabelEncoder with string keys is in ai.onnx.ml from version 2; ONNX Runtime has supported it since 1.x.
ML_OPSET = 2
DECISION_THRESHOLD = 0.5
KNOWN_INPUTS_FILE = "parity_inputs.parquet"
EXPECTED_COLUMN = "expected_failure_probability"
_CODES = f"{CATEGORY_FEATURE}_code"
_KNOWN_HELD_OUT_ROWS = 200
_PRODUCTION_SAMPLE_ROWS = 2_000


class ParityError(AssertionError):
    """The exported graph does not predict what the trained model predicts."""


class OnnxModel(BaseModel):
    """An exported model file."""

    path: Annotated[str, Content]
    sha256: str
    opset: int
    size_bytes: int


class ParityThresholds(BaseModel):
    """How far ONNX Runtime may stray from the trained model: |onnx - ref| <= atol + rtol * |ref| on every row."""

    atol: float = Field(1e-5, ge=0, description="Absolute tolerance on the failure probability.")
    rtol: float = Field(1e-4, ge=0, description="Relative tolerance on the failure probability.")


class SetParity(BaseModel):
    """Agreement on one set of rows."""

    rows: int
    max_abs_error: float = Field(description="Largest absolute difference in failure probability.")
    max_rel_error: float = Field(description="Largest difference relative to the reference model's probability.")
    out_of_tolerance: int = Field(description="Rows outside atol + rtol * |torch|.")
    decision_flips: int = Field(description=f"Rows whose class at threshold {DECISION_THRESHOLD} differs.")

    @property
    def passed(self) -> bool:
        """No row out of tolerance and no flipped decision."""
        return not self.out_of_tolerance and not self.decision_flips


class ParityReport(BaseModel):
    """Agreement of ONNX Runtime with PyTorch on every set of rows checked."""

    sets: dict[str, SetParity]
    known_inputs: Annotated[str, Content] = Field(
        description="The stored known-input rows with PyTorch's expected probabilities."
    )


def prepend_string_lookup(proto: onnx.ModelProto) -> None:
    """Let the graph take machine_model as raw strings: a LabelEncoder maps them to the codes the model reads."""
    graph = proto.graph
    codes_input = next(i for i in graph.input if i.name == CATEGORY_FEATURE)
    batch_dim = codes_input.type.tensor_type.shape.dim[0]
    for node in graph.node:
        node.input[:] = [_CODES if name == CATEGORY_FEATURE else name for name in node.input]
    graph.input.remove(codes_input)
    strings = helper.make_tensor_value_info(CATEGORY_FEATURE, TensorProto.STRING, [batch_dim.dim_param or None])
    graph.input.append(strings)
    lookup = helper.make_node(
        "LabelEncoder",
        [CATEGORY_FEATURE],
        [_CODES],
        domain="ai.onnx.ml",
        keys_strings=list(CATEGORY_VOCABULARY[1:]),
        values_int64s=list(range(1, len(CATEGORY_VOCABULARY))),
        default_int64=0,  # machine models never seen in training share the <unknown> embedding
        name="machine_model_lookup",
    )
    graph.node.insert(0, lookup)
    # A graph of tree ensembles already imports ai.onnx.ml; a domain may be imported only once.
    ml = next((o for o in proto.opset_import if o.domain == "ai.onnx.ml"), None)
    if ml is None:
        proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    else:
        ml.version = max(ml.version, ML_OPSET)


def stamp_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace the graph's metadata with the caller's plus the input contract, then check the whole model."""
    stamped = {
        **metadata,
        "numeric_features": ",".join(NUMERIC_FEATURES),
        "category_vocabulary": ",".join(CATEGORY_VOCABULARY),
        "opset": str(OPSET),
        "producer": "conveyor",
    }
    del proto.metadata_props[:]
    for key, value in stamped.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)


def to_onnx(network: FailureModel, metadata: dict[str, str]) -> onnx.ModelProto:
    """The network as a checked ONNX graph over raw telemetry, with a dynamic batch axis and metadata."""
    batch = torch.export.Dim("batch", min=1)
    example = (torch.zeros(2, len(NUMERIC_FEATURES)), torch.zeros(2, dtype=torch.int64))
    program = torch.onnx.export(
        network,
        example,
        input_names=list(INPUT_NAMES),
        output_names=[OUTPUT_NAME],
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes=({0: batch}, {0: batch}),
        external_data=False,
    )
    assert program is not None
    proto = program.model_proto
    prepend_string_lookup(proto)
    stamp_metadata(proto, metadata)
    return proto


def onnx_model(path: Path) -> OnnxModel:
    """Describe an ONNX file on disk."""
    opset = next(
        o.version for o in onnx.load(path, load_external_data=False).opset_import if o.domain in ("", "ai.onnx")
    )
    return OnnxModel(path=str(path), sha256=sha256_file(path), opset=opset, size_bytes=path.stat().st_size)


@cached_task("Export to ONNX")
def export_onnx(model: TrainedModel, metadata: dict[str, str]) -> OnnxModel:
    """Export the trained model over raw telemetry, check the graph, and stamp its metadata."""
    proto = to_onnx(load_weights(Path(model.weights_path), model.hidden_units), metadata)
    path = task_output_dir() / "model.onnx"
    write_atomically(path, lambda tmp: onnx.save_model(proto, tmp))
    return onnx_model(path)


def onnx_inputs(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Raw telemetry rows as the graph's inputs: sensors as float32, machine models as strings."""
    numeric, _ = encode_features(frame)
    return {
        "numeric": numeric,
        CATEGORY_FEATURE: frame[CATEGORY_FEATURE].astype(str).to_numpy(dtype=object),
    }


def onnx_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """An ONNX Runtime CPU session; threads=0 lets ONNX Runtime choose."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_run(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Failure probabilities for inputs already shaped as the graph takes them, shape (rows,)."""
    (output,) = session.run([OUTPUT_NAME], inputs)
    return np.asarray(output).ravel()


def onnx_predict(session: ort.InferenceSession, frame: pd.DataFrame) -> np.ndarray:
    """Failure probabilities from ONNX Runtime for raw telemetry rows, shape (rows,)."""
    return onnx_run(session, onnx_inputs(frame))


def compare(actual: np.ndarray, expected: np.ndarray, thresholds: ParityThresholds) -> SetParity:
    """How far one engine's probabilities are from another's."""
    error = np.abs(actual.astype(np.float64) - expected)
    return SetParity(
        rows=len(expected),
        max_abs_error=float(error.max(initial=0.0)),
        max_rel_error=float((error / np.maximum(np.abs(expected), np.finfo(np.float32).tiny)).max(initial=0.0)),
        out_of_tolerance=int(np.sum(error > thresholds.atol + thresholds.rtol * np.abs(expected))),
        decision_flips=int(np.sum((actual >= DECISION_THRESHOLD) != (expected >= DECISION_THRESHOLD))),
    )


def known_inputs(holdout: pd.DataFrame) -> pd.DataFrame:
    """A fixed set of rows kept with the model: held-out rows plus the extremes of every sensor and an unseen model."""
    rows = holdout.head(_KNOWN_HELD_OUT_ROWS)
    edges = []
    for feature in NUMERIC_FEATURES:
        for value in (holdout[feature].min(), holdout[feature].max(), 0.0):
            edge = rows.iloc[[0]].copy()
            edge[feature] = value
            edges.append(edge)
    unseen = rows.iloc[[0]].copy()
    unseen[CATEGORY_FEATURE] = "never-seen-model"
    frame = pd.concat([rows, *edges, unseen], ignore_index=True)
    frame[CATEGORY_FEATURE] = frame[CATEGORY_FEATURE].astype(str)
    return frame


def production_sample(partition: Path | None) -> pd.DataFrame | None:
    """Rows of a landed partition with complete features, or None when there is nothing usable."""
    if partition is None:
        return None
    try:
        frame = pd.read_parquet(partition)
        numeric = frame[list(NUMERIC_FEATURES)].apply(pd.to_numeric, errors="coerce")
    except (OSError, ValueError, KeyError):
        return None  # an unreadable partition is the validate flow's business, not the export's
    usable = frame[np.isfinite(numeric).all(axis=1) & frame[CATEGORY_FEATURE].notna()]
    return usable.sample(min(len(usable), _PRODUCTION_SAMPLE_ROWS), random_state=0) if len(usable) else None


def check_parity(
    onnx_path: Path,
    reference: Callable[[pd.DataFrame], np.ndarray],
    against: str,
    holdout: pd.DataFrame,
    thresholds: ParityThresholds,
    production: Path | None,
    known_path: Path,
) -> ParityReport:
    """Compare ONNX Runtime with the model's own predictions on every row set; keep the known inputs; fail if apart."""
    session = onnx_session(onnx_path)
    known = known_inputs(holdout)
    known[EXPECTED_COLUMN] = reference(known)
    write_atomically(known_path, lambda tmp: known.to_parquet(tmp, index=False))
    row_sets = {"held-out": holdout, "known inputs": known, "production sample": production_sample(production)}
    report = ParityReport(
        known_inputs=str(known_path),
        sets={
            name: compare(onnx_predict(session, rows), reference(rows), thresholds)
            for name, rows in row_sets.items()
            if rows is not None
        },
    )
    create_table_artifact(
        [{"rows checked": name, **parity.model_dump()} for name, parity in report.sets.items()],
        key="onnx-parity",
        description=f"ONNX Runtime vs {against} on every set of rows checked",
    )
    failing = {name: parity for name, parity in report.sets.items() if not parity.passed}
    if failing:
        details = "; ".join(
            f"{name}: {p.out_of_tolerance} of {p.rows} rows out of tolerance (max abs error {p.max_abs_error:.2e}), "
            f"{p.decision_flips} flipped decisions"
            for name, p in failing.items()
        )
        raise ParityError(
            f"ONNX export disagrees with {against} beyond atol {thresholds.atol:g} + rtol {thresholds.rtol:g}: "
            f"{details}."
        )
    get_run_logger().info(
        "ONNX parity with %s holds on %s",
        against,
        ", ".join(f"{name} ({p.rows} rows)" for name, p in report.sets.items()),
    )
    return report


@cached_task("Check ONNX parity")
def check_onnx_parity(
    exported: OnnxModel,
    model: TrainedModel,
    snapshot: Snapshot,
    holdout_fraction: float,
    thresholds: ParityThresholds,
    production: Path | None,
) -> ParityReport:
    """Fail unless ONNX Runtime matches PyTorch on held-out rows, the stored known inputs and production data."""
    network = load_weights(Path(model.weights_path), model.hidden_units)
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction)
    return check_parity(
        Path(exported.path),
        lambda rows: predict(network, rows),
        "PyTorch",
        holdout,
        thresholds,
        production,
        task_output_dir() / KNOWN_INPUTS_FILE,
    )
