"""ONNX Runtime's side of an export: sessions, inputs from raw rows, a graph's stamped encoding, its known inputs.

No torch: the model server and the gate's scoring import only this, not the exporter (``conveyor.export.onnx``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from pydantic import BaseModel

from conveyor.cache import Content
from conveyor.io.files import sha256_file
from conveyor.models.features import NUMERIC_INPUT, encode_features
from conveyor.schema.spec import FeatureEncoding

KNOWN_INPUTS_FILE = "parity_inputs.parquet"
EXPECTED_PREFIX = "expected_"  # the known inputs' column of expected outputs: expected_<prediction>


class OnnxModel(BaseModel):
    """An exported model file, and how it reads rows (from the encoding stamped in its metadata)."""

    path: Annotated[str, Content]
    sha256: str
    opset: int
    size_bytes: int
    encoding: FeatureEncoding


def onnx_model(path: Path) -> OnnxModel:
    """Describe an ONNX file on disk that Conveyor exported (its metadata holds the feature encoding)."""
    proto = onnx.load(path, load_external_data=False)
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    stamped = {prop.key: prop.value for prop in proto.metadata_props}
    encoding = FeatureEncoding.model_validate_json(stamped["encoding"])
    return OnnxModel(
        path=str(path), sha256=sha256_file(path), opset=opset, size_bytes=path.stat().st_size, encoding=encoding
    )


def onnx_inputs(frame: pd.DataFrame, encoding: FeatureEncoding) -> dict[str, np.ndarray]:
    """Raw rows as the graph's inputs: numeric features as float32, categorical columns as strings."""
    numeric, _ = encode_features(frame, encoding)
    strings = {column: frame[column].astype(str).to_numpy(dtype=object) for column in encoding.categorical}
    return {NUMERIC_INPUT: numeric, **strings}


def onnx_session(path: Path, threads: int = 0) -> ort.InferenceSession:
    """An ONNX Runtime CPU session; threads=0 lets ONNX Runtime choose."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_run(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Probabilities for inputs already shaped as the graph takes them (its one output), shape (rows,)."""
    (output,) = session.run(None, inputs)
    return np.asarray(output).ravel()


def onnx_predict(session: ort.InferenceSession, frame: pd.DataFrame, encoding: FeatureEncoding) -> np.ndarray:
    """Probabilities from ONNX Runtime for raw rows, shape (rows,)."""
    return onnx_run(session, onnx_inputs(frame, encoding))


def expected_column(encoding: FeatureEncoding) -> str:
    """The known inputs' column of the expected outputs (expected_failure_probability for telemetry)."""
    return f"{EXPECTED_PREFIX}{encoding.prediction}"


def stored_output_error(session: ort.InferenceSession, folder: Path, encoding: FeatureEncoding) -> tuple[int, float]:
    """Rows of a version's stored known inputs, and the largest distance of a session's outputs from the stored ones."""
    known = pd.read_parquet(folder / KNOWN_INPUTS_FILE)
    expected = known.pop(expected_column(encoding)).to_numpy(dtype=np.float64)
    return len(known), float(np.max(np.abs(onnx_predict(session, known, encoding) - expected), initial=0.0))
