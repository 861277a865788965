"""One table names each model family's tasks; the XGBoost graph gives the reason that family has no edge variant."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import onnx
from onnx import TensorProto

from conveyor.data.snapshots import Snapshot
from conveyor.export.edge import quantize_model
from conveyor.export.families import FAMILIES, ModelFamily
from conveyor.export.xgboost import export_xgboost
from conveyor.models.boosting import train_xgboost
from conveyor.schema.telemetry import TELEMETRY
from tests.fixtures.models import FAST_BOOSTING


def test_every_model_family_has_its_tasks() -> None:
    assert set(FAMILIES) == set(get_args(ModelFamily))


def test_int8_quantization_leaves_an_xgboost_graph_as_it_was(snapshot: Snapshot, tmp_path: Path) -> None:
    # Should an ONNX Runtime release quantize tree ensembles, this fails: XGBoost could then get edge variants.
    exported = export_xgboost(train_xgboost(snapshot, TELEMETRY, FAST_BOOSTING), {"data_sha256": snapshot.sha256})
    quantized = quantize_model(Path(exported.path), tmp_path / "int8.onnx", "int8")
    fp32, int8 = onnx.load(exported.path).graph, onnx.load(quantized.path).graph
    assert [node.SerializeToString() for node in int8.node] == [node.SerializeToString() for node in fp32.node]
    assert not [t.name for t in int8.initializer if t.data_type in (TensorProto.INT8, TensorProto.UINT8)]
    assert quantized.size_bytes >= exported.size_bytes
    assert FAMILIES["xgboost"].why_no_edge is not None
