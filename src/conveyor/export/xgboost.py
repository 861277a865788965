"""XGBoost boosters as ONNX graphs over raw rows (the torch export's signature), with their parity check."""

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
    prepend_string_lookups,
    stamp_metadata,
)
from conveyor.io.files import write_atomically
from conveyor.models.boosting import BoostedModel, load_booster, predict_booster
from conveyor.models.features import NUMERIC_INPUT
from conveyor.schema.spec import FeatureEncoding

# onnxmltools converts XGBoost for default-domain opsets up to 15; the wrapper nodes here use ops valid in 18.
_CONVERTER_OPSET = 15
_GRAPH_OPSET = 18
_FEATURES = "features"


def booster_to_onnx(booster: xgb.Booster, encoding: FeatureEncoding, metadata: dict[str, str]) -> onnx.ModelProto:
    """The booster as a checked ONNX graph over raw rows: the torch export's inputs and output."""
    width = len(encoding.numeric) + len(encoding.categorical)
    trees = convert_xgboost(
        booster, initial_types=[(_FEATURES, FloatTensorType([None, width]))], target_opset=_CONVERTER_OPSET
    )
    # The ensemble's outputs are (label, probabilities of both classes); the contract is P(failure) only.
    probabilities = trees.graph.output[1].name
    # The tree ensemble reads one matrix; build it from the torch graph's inputs (codes as float columns).
    front = []
    for column in encoding.categorical:
        front += [
            helper.make_node("Cast", [column], [f"{column}_float"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", [f"{column}_float", "column_axis"], [f"{column}_column"]),
        ]
    columns = [NUMERIC_INPUT, *(f"{column}_column" for column in encoding.categorical)]
    front.append(helper.make_node("Concat", columns, [_FEATURES], axis=1))
    back = [helper.make_node("Gather", [probabilities, "positive_class"], [encoding.prediction], axis=1)]
    graph = helper.make_graph(
        [*front, *trees.graph.node, *back],
        "xgboost",
        [
            helper.make_tensor_value_info(NUMERIC_INPUT, TensorProto.FLOAT, ["batch", len(encoding.numeric)]),
            *(helper.make_tensor_value_info(c, TensorProto.INT64, ["batch"]) for c in encoding.categorical),
        ],
        [helper.make_tensor_value_info(encoding.prediction, TensorProto.FLOAT, ["batch", 1])],
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
    prepend_string_lookups(proto, encoding)
    stamp_metadata(proto, {**metadata, "model_family": "xgboost"}, encoding)
    return proto


@cached_task("Export XGBoost model to ONNX")
def export_xgboost(model: BoostedModel, metadata: dict[str, str]) -> OnnxModel:
    """Export the booster over raw rows (the torch model's input signature), check it, stamp its metadata."""
    proto = booster_to_onnx(load_booster(Path(model.model_path)), model.encoding, metadata)
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
    encoding = model.encoding
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction, encoding.entity)
    return check_parity(
        Path(exported.path),
        encoding,
        lambda rows: predict_booster(booster, rows, encoding),
        "XGBoost",
        holdout,
        thresholds,
        production,
        task_output_dir() / KNOWN_INPUTS_FILE,
    )
