"""The ONNX file predicts what PyTorch predicts, and the parity gate notices when it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tasks.data import Snapshot
from tasks.export import OPSET, OnnxModel, ParityError, check_onnx_parity, export_onnx, onnx_predict
from tasks.modeling import NUMERIC_FEATURES
from tasks.training import TrainedModel
from tests.conftest import FAST_TRAINING

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def exported(trained: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    return export_onnx(trained, tmp_path_factory.mktemp("onnx"), {"model_name": "test", "data_sha256": "abc"})


def test_export_passes_the_parity_gate(exported: OnnxModel, trained: TrainedModel, snapshot: Snapshot) -> None:
    report = check_onnx_parity(exported, trained, snapshot, FAST_TRAINING.holdout_fraction, TOLERANCE)
    assert report.rows > 1000
    assert report.max_abs_error <= TOLERANCE
    assert report.decision_flips == 0


def test_graph_carries_its_metadata_and_takes_any_batch(exported: OnnxModel) -> None:
    proto = onnx.load(exported.path)
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["data_sha256"] == "abc"
    assert metadata["numeric_features"].split(",") == list(NUMERIC_FEATURES)
    assert metadata["opset"] == str(OPSET)
    for batch in (1, 1000):
        numeric = np.full((batch, len(NUMERIC_FEATURES)), 50.0, dtype=np.float32)
        assert onnx_predict(Path(exported.path), numeric, np.ones(batch, dtype=np.int64)).shape == (batch,)


def test_perturbed_weight_fails_the_gate(
    exported: OnnxModel, trained: TrainedModel, snapshot: Snapshot, tmp_path: Path
) -> None:
    proto = onnx.load(exported.path)
    weight = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weight).copy()
    values.flat[0] += 0.5
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    broken = tmp_path / "broken.onnx"
    onnx.save_model(proto, broken)
    tampered = exported.model_copy(update={"path": str(broken)})
    with pytest.raises(ParityError, match="disagrees with PyTorch"):
        check_onnx_parity.fn(tampered, trained, snapshot, FAST_TRAINING.holdout_fraction, TOLERANCE)


def test_swapped_feature_order_fails_the_gate(
    exported: OnnxModel, trained: TrainedModel, snapshot: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tasks.export as export

    original = export.onnx_predict
    monkeypatch.setattr(export, "onnx_predict", lambda path, numeric, codes: original(path, numeric[:, ::-1], codes))
    with pytest.raises(ParityError, match="flipped decisions"):
        check_onnx_parity.fn(exported, trained, snapshot, FAST_TRAINING.holdout_fraction, TOLERANCE)
