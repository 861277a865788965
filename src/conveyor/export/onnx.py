"""ONNX export and the parity gate that proves ONNX Runtime predicts what PyTorch predicts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import numpy as np
import onnx
import pandas as pd
import torch
from onnx import TensorProto, helper
from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from conveyor.cache import Content, cached_task, task_output_dir
from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout

# ONNX Runtime's side lives in export.runtime, which imports no torch (the model server loads only that); its names
# stay importable from here.
from conveyor.export.runtime import KNOWN_INPUTS_FILE as KNOWN_INPUTS_FILE
from conveyor.export.runtime import OnnxModel as OnnxModel
from conveyor.export.runtime import expected_column as expected_column
from conveyor.export.runtime import onnx_inputs as onnx_inputs
from conveyor.export.runtime import onnx_model as onnx_model
from conveyor.export.runtime import onnx_predict as onnx_predict
from conveyor.export.runtime import onnx_run as onnx_run
from conveyor.export.runtime import onnx_session as onnx_session
from conveyor.io.files import write_atomically
from conveyor.models.features import input_names
from conveyor.models.mlp import TabularMLP, load_weights, predict
from conveyor.models.training import TrainedModel
from conveyor.schema.spec import FeatureEncoding

OPSET = 18
# LabelEncoder with string keys is in ai.onnx.ml from version 2; ONNX Runtime has supported it since 1.x.
ML_OPSET = 2
DECISION_THRESHOLD = 0.5
# A category no vocabulary holds: the known inputs check the unknown embedding with it.
UNSEEN_CATEGORY = "never-seen-model"
_KNOWN_HELD_OUT_ROWS = 200
_PRODUCTION_SAMPLE_ROWS = 2_000


class ParityError(AssertionError):
    """The exported graph does not predict what the trained model predicts."""


class ParityThresholds(BaseModel):
    """How far ONNX Runtime may stray from the trained model: |onnx - ref| <= atol + rtol * |ref| on every row."""

    atol: float = Field(1e-5, ge=0, description="Absolute tolerance on the predicted probability.")
    rtol: float = Field(1e-4, ge=0, description="Relative tolerance on the predicted probability.")


class SetParity(BaseModel):
    """Agreement on one set of rows."""

    rows: int
    max_abs_error: float = Field(description="Largest absolute difference in predicted probability.")
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


def prepend_string_lookups(proto: onnx.ModelProto, encoding: FeatureEncoding) -> None:
    """Let the graph take categorical columns as raw strings: a LabelEncoder each maps them to the model's codes."""
    graph = proto.graph
    for column, categories in encoding.categorical.items():
        codes = f"{column}_code"
        codes_input = next(i for i in graph.input if i.name == column)
        batch_dim = codes_input.type.tensor_type.shape.dim[0]
        for node in graph.node:
            node.input[:] = [codes if name == column else name for name in node.input]
        graph.input.remove(codes_input)
        strings = helper.make_tensor_value_info(column, TensorProto.STRING, [batch_dim.dim_param or None])
        graph.input.append(strings)
        lookup = helper.make_node(
            "LabelEncoder",
            [column],
            [codes],
            domain="ai.onnx.ml",
            keys_strings=list(categories),
            values_int64s=list(range(1, len(categories) + 1)),
            default_int64=0,  # categories never seen in training share the unknown embedding
            name=f"{column}_lookup",
        )
        graph.node.insert(0, lookup)
    if not encoding.categorical:
        return  # no lookup: the graph needs no ai.onnx.ml import
    # A graph of tree ensembles already imports ai.onnx.ml; a domain may be imported only once.
    ml = next((o for o in proto.opset_import if o.domain == "ai.onnx.ml"), None)
    if ml is None:
        proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    else:
        ml.version = max(ml.version, ML_OPSET)


def stamp_metadata(proto: onnx.ModelProto, metadata: dict[str, str], encoding: FeatureEncoding) -> None:
    """Replace the graph's metadata with the caller's plus the input contract, then check the whole model."""
    stamped = {
        **metadata,
        "numeric_features": ",".join(encoding.numeric),
        **{f"categories.{column}": ",".join(values) for column, values in encoding.categorical.items()},
        "encoding": encoding.model_dump_json(),
        "opset": str(OPSET),
        "producer": "conveyor",
    }
    del proto.metadata_props[:]
    for key, value in stamped.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto, full_check=True)


class _Traceable(torch.nn.Module):
    """The network with a signature torch.export traces (it sees no ``*codes``): a matrix and a list of codes."""

    def __init__(self, network: TabularMLP):
        super().__init__()
        self.network = network

    def forward(self, numeric: torch.Tensor, codes: list[torch.Tensor]) -> torch.Tensor:
        """The wrapped network's probabilities."""
        return self.network(numeric, *codes)


def to_onnx(network: TabularMLP, encoding: FeatureEncoding, metadata: dict[str, str]) -> onnx.ModelProto:
    """The network as a checked ONNX graph over raw rows, with a dynamic batch axis and metadata."""
    batch = torch.export.Dim("batch", min=1)
    # Lists, not tuples: torch.onnx.export turns the dynamic shapes' tuples into lists and then compares structures.
    codes = [torch.zeros(2, dtype=torch.int64) for _ in encoding.categorical]
    # verbose=False: the exporter otherwise prints its progress to stdout, which the CLI's --json output owns.
    program = torch.onnx.export(
        _Traceable(network).eval(),
        (torch.zeros(2, len(encoding.numeric)), codes),
        input_names=input_names(encoding),
        output_names=[encoding.prediction],
        opset_version=OPSET,
        dynamo=True,
        dynamic_shapes=({0: batch}, [{0: batch} for _ in codes]),
        external_data=False,
        verbose=False,
    )
    assert program is not None
    proto = program.model_proto
    prepend_string_lookups(proto, encoding)
    stamp_metadata(proto, metadata, encoding)
    return proto


@cached_task("Export to ONNX")
def export_onnx(model: TrainedModel, metadata: dict[str, str]) -> OnnxModel:
    """Export the trained model over raw rows, check the graph, and stamp its metadata."""
    network = load_weights(Path(model.weights_path), model.hidden_units, model.encoding)
    proto = to_onnx(network, model.encoding, metadata)
    path = task_output_dir() / "model.onnx"
    write_atomically(path, lambda tmp: onnx.save_model(proto, tmp))
    return onnx_model(path)


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


def known_inputs(holdout: pd.DataFrame, encoding: FeatureEncoding) -> pd.DataFrame:
    """A fixed set of rows kept with the model: held-out rows, every numeric extreme and an unseen category each."""
    rows = holdout.head(_KNOWN_HELD_OUT_ROWS)
    edges = []
    for feature in encoding.numeric:
        for value in (holdout[feature].min(), holdout[feature].max(), 0.0):
            edge = rows.iloc[[0]].copy()
            edge[feature] = value
            edges.append(edge)
    for column in encoding.categorical:
        unseen = rows.iloc[[0]].copy()
        unseen[column] = UNSEEN_CATEGORY
        edges.append(unseen)
    frame = pd.concat([rows, *edges], ignore_index=True)
    return frame.astype(dict.fromkeys(encoding.categorical, str))


def production_sample(partition: Path | None, encoding: FeatureEncoding) -> pd.DataFrame | None:
    """Rows of a landed partition with complete features, or None when there is nothing usable."""
    if partition is None:
        return None
    try:
        frame = pd.read_parquet(partition)
        numeric = frame[encoding.numeric].apply(pd.to_numeric, errors="coerce")
        categories = frame[list(encoding.categorical)].notna().all(axis=1)
    except (OSError, ValueError, KeyError):
        return None  # an unreadable partition is the validate flow's business, not the export's
    usable = frame[np.isfinite(numeric).all(axis=1) & categories]
    return usable.sample(min(len(usable), _PRODUCTION_SAMPLE_ROWS), random_state=0) if len(usable) else None


def check_parity(
    onnx_path: Path,
    encoding: FeatureEncoding,
    reference: Callable[[pd.DataFrame], np.ndarray],
    against: str,
    holdout: pd.DataFrame,
    thresholds: ParityThresholds,
    production: Path | None,
    known_path: Path,
) -> ParityReport:
    """Compare ONNX Runtime with the model's own predictions on every row set; keep the known inputs; fail if apart."""
    session = onnx_session(onnx_path)
    known = known_inputs(holdout, encoding)
    known[expected_column(encoding)] = reference(known)
    write_atomically(known_path, lambda tmp: known.to_parquet(tmp, index=False))
    sample = production_sample(production, encoding)
    row_sets = {"held-out": holdout, "known inputs": known, "production sample": sample}
    report = ParityReport(
        known_inputs=str(known_path),
        sets={
            name: compare(onnx_predict(session, rows, encoding), reference(rows), thresholds)
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
    encoding = model.encoding
    network = load_weights(Path(model.weights_path), model.hidden_units, encoding)
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction, encoding.entity)
    return check_parity(
        Path(exported.path),
        encoding,
        lambda rows: predict(network, rows, encoding),
        "PyTorch",
        holdout,
        thresholds,
        production,
        task_output_dir() / KNOWN_INPUTS_FILE,
    )
