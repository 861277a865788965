"""XGBoost boosters as ONNX graphs over raw telemetry (the torch export's signature), with their parity check."""

from __future__ import annotations

from pathlib import Path

import onnx
import xgboost as xgb
from onnx import TensorProto, helper
from onnxmltools import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType

from conveyor.cache import cached_task, task_output_dir
from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.export.onnx import (
    KNOWN_INPUTS_FILE,
    OnnxModel,
    ParityReport,
    ParityThresholds,
    check_parity,
    onnx_model,
    prepend_string_lookup,
    stamp_metadata,
)
from conveyor.io.files import write_atomically
from conveyor.models.boosting import BoostedModel, load_booster, predict_booster
from conveyor.models.mlp import OUTPUT_NAME
from conveyor.schema.telemetry import CATEGORY_FEATURE, NUMERIC_FEATURES

# onnxmltools converts XGBoost for default-domain opsets up to 15; the wrapper nodes here use ops valid in 18.
_CONVERTER_OPSET = 15
_GRAPH_OPSET = 18
_FEATURES = "features"


def booster_to_onnx(booster: xgb.Booster, metadata: dict[str, str]) -> onnx.ModelProto:
    """The booster as a checked ONNX graph over raw telemetry: the torch export's inputs and output."""
    width = len(NUMERIC_FEATURES) + 1
    trees = convert_xgboost(
        booster, initial_types=[(_FEATURES, FloatTensorType([None, width]))], target_opset=_CONVERTER_OPSET
    )
    # The ensemble's outputs are (label, probabilities of both classes); the contract is P(failure) only.
    probabilities = trees.graph.output[1].name
    # The tree ensemble reads one matrix; build it from the torch graph's two inputs (codes as a float column).
    front = [
        helper.make_node("Cast", [CATEGORY_FEATURE], ["code_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["code_float", "column_axis"], ["code_column"]),
        helper.make_node("Concat", ["numeric", "code_column"], [_FEATURES], axis=1),
    ]
    back = [helper.make_node("Gather", [probabilities, "positive_class"], [OUTPUT_NAME], axis=1)]
    graph = helper.make_graph(
        [*front, *trees.graph.node, *back],
        "failure_predictor_xgboost",
        [
            helper.make_tensor_value_info("numeric", TensorProto.FLOAT, ["batch", len(NUMERIC_FEATURES)]),
            helper.make_tensor_value_info(CATEGORY_FEATURE, TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", 1])],
        initializer=[
            *trees.graph.initializer,
            helper.make_tensor("column_axis", TensorProto.INT64, [1], [1]),
            helper.make_tensor("positive_class", TensorProto.INT64, [1], [1]),
        ],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", _GRAPH_OPSET),
            *(o for o in trees.opset_import if o.domain not in ("", "ai.onnx")),
        ],
        producer_name="conveyor",
    )
    # The oldest IR that carries these opsets, so older ONNX Runtimes (edge devices) still load the file.
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    prepend_string_lookup(proto)
    stamp_metadata(proto, {**metadata, "model_family": "xgboost"})
    return proto


@cached_task("Export XGBoost model to ONNX")
def export_xgboost(model: BoostedModel, metadata: dict[str, str]) -> OnnxModel:
    """Export the booster over raw telemetry (the torch model's input signature), check it, stamp its metadata."""
    proto = booster_to_onnx(load_booster(Path(model.model_path)), metadata)
    path = task_output_dir() / "model.onnx"
    write_atomically(path, lambda tmp: onnx.save_model(proto, tmp))
    return onnx_model(path)


@cached_task("Check XGBoost ONNX parity")
def check_xgboost_parity(
    exported: OnnxModel,
    model: BoostedModel,
    snapshot: Snapshot,
    holdout_fraction: float,
    thresholds: ParityThresholds,
    production: Path | None,
) -> ParityReport:
    """Fail unless ONNX Runtime matches XGBoost on held-out rows, the stored known inputs and production data."""
    booster = load_booster(Path(model.model_path))
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction)
    return check_parity(
        Path(exported.path),
        lambda rows: predict_booster(booster, rows),
        "XGBoost",
        holdout,
        thresholds,
        production,
        task_output_dir() / KNOWN_INPUTS_FILE,
    )
