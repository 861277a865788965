"""ONNX export and the parity gate that proves ONNX Runtime predicts what PyTorch predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from prefect import get_run_logger, task
from pydantic import BaseModel, Field

from tasks.data import Snapshot, read_snapshot, split_holdout
from tasks.files import sha256_file
from tasks.modeling import (
    CATEGORY_VOCABULARY,
    INPUT_NAMES,
    NUMERIC_FEATURES,
    OUTPUT_NAME,
    FailureModel,
    encode_features,
    load_weights,
    predict,
)
from tasks.training import TrainedModel

OPSET = 18
DECISION_THRESHOLD = 0.5


class ParityError(AssertionError):
    """The exported graph does not predict what the trained model predicts."""


class OnnxModel(BaseModel):
    """An exported model file."""

    path: str
    sha256: str
    opset: int


class ParityReport(BaseModel):
    """How closely ONNX Runtime reproduces PyTorch on held-out rows."""

    rows: int
    max_abs_error: float = Field(description="Largest absolute difference in failure probability.")
    decision_flips: int = Field(description=f"Rows whose class at threshold {DECISION_THRESHOLD} differs.")


def to_onnx(network: FailureModel, metadata: dict[str, str]) -> onnx.ModelProto:
    """The network as a checked ONNX graph with a dynamic batch axis and the metadata stamped in."""
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
    return proto


@task(name="Export to ONNX")
def export_onnx(model: TrainedModel, workdir: Path, metadata: dict[str, str]) -> OnnxModel:
    """Export the trained model with a dynamic batch axis, check the graph, and stamp its metadata."""
    proto = to_onnx(load_weights(Path(model.weights_path), model.hidden_units), metadata)
    path = workdir / "model.onnx"
    onnx.save_model(proto, path)
    return OnnxModel(path=str(path), sha256=sha256_file(path), opset=OPSET)


def onnx_predict(path: Path, numeric: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Failure probabilities from ONNX Runtime, shape (rows,)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run([OUTPUT_NAME], dict(zip(INPUT_NAMES, (numeric, codes), strict=True)))
    return np.asarray(output).ravel()


@task(name="Check ONNX parity")
def check_onnx_parity(
    exported: OnnxModel, model: TrainedModel, snapshot: Snapshot, holdout_fraction: float, tolerance: float
) -> ParityReport:
    """Fail unless ONNX Runtime matches PyTorch on every held-out row within tolerance, with no flipped decision."""
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction)
    expected = predict(load_weights(Path(model.weights_path), model.hidden_units), holdout)
    actual = onnx_predict(Path(exported.path), *encode_features(holdout))
    report = ParityReport(
        rows=len(holdout),
        max_abs_error=float(np.max(np.abs(actual - expected))),
        decision_flips=int(np.sum((actual >= DECISION_THRESHOLD) != (expected >= DECISION_THRESHOLD))),
    )
    if report.max_abs_error > tolerance or report.decision_flips:
        raise ParityError(
            f"ONNX export disagrees with PyTorch on {report.rows} held-out rows: max abs error "
            f"{report.max_abs_error:.2e} (tolerance {tolerance:.0e}), {report.decision_flips} flipped decisions."
        )
    get_run_logger().info("ONNX parity on %d rows: max abs error %.2e", report.rows, report.max_abs_error)
    return report
