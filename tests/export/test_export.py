"""The ONNX file predicts what PyTorch predicts from raw telemetry, and the parity gate notices when it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.export.onnx import (
    OPSET,
    OnnxModel,
    ParityError,
    ParityReport,
    ParityThresholds,
    check_onnx_parity,
    expected_column,
    export_onnx,
    onnx_predict,
    onnx_session,
)
from conveyor.models.mlp import load_weights, predict
from conveyor.models.training import TrainedModel
from conveyor.schema.spec import FeatureEncoding
from conveyor.schema.telemetry import TELEMETRY
from tests.fixtures.models import FAST_TRAINING

CATEGORY = TELEMETRY.features.categorical[0].column

STRICT = ParityThresholds()


@pytest.fixture(scope="module")
def exported(trained: TrainedModel) -> OnnxModel:
    return export_onnx(trained, {"model_name": "test", "data_sha256": "abc"})


def _check(exported: OnnxModel, trained: TrainedModel, snapshot: Snapshot) -> ParityReport:
    return check_onnx_parity(exported, trained, snapshot, FAST_TRAINING.holdout_fraction, STRICT, None)


def test_export_passes_the_parity_gate_on_every_row_set(
    exported: OnnxModel, trained: TrainedModel, snapshot: Snapshot, landed_partition: Path
) -> None:
    report = check_onnx_parity(exported, trained, snapshot, FAST_TRAINING.holdout_fraction, STRICT, landed_partition)
    assert set(report.sets) == {"held-out", "known inputs", "production sample"}
    for parity in report.sets.values():
        assert parity.rows > 0
        assert parity.max_abs_error <= STRICT.atol
        assert parity.decision_flips == 0


def test_known_inputs_are_kept_and_reproduce(exported: OnnxModel, trained: TrainedModel, snapshot: Snapshot) -> None:
    known = pd.read_parquet(_check(exported, trained, snapshot).known_inputs)
    assert "never-seen-model" in set(known[CATEGORY])  # an unseen machine model is among them
    replayed = onnx_predict(onnx_session(Path(exported.path)), known, exported.encoding)
    np.testing.assert_allclose(replayed, known[expected_column(exported.encoding)], atol=STRICT.atol)


def test_graph_reads_raw_strings_carries_metadata_and_takes_any_batch(exported: OnnxModel) -> None:
    proto = onnx.load(exported.path)
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert metadata["data_sha256"] == "abc"
    assert metadata["numeric_features"].split(",") == list(TELEMETRY.features.numeric)
    assert metadata["opset"] == str(OPSET)
    strings = next(i for i in proto.graph.input if i.name == CATEGORY)
    assert strings.type.tensor_type.elem_type == onnx.TensorProto.STRING
    session = onnx_session(Path(exported.path))
    for batch in (1, 1000):
        rows = pd.DataFrame(
            {f: np.full(batch, 50.0) for f in TELEMETRY.features.numeric} | {CATEGORY: ["TX-200"] * batch}
        )
        assert onnx_predict(session, rows, exported.encoding).shape == (batch,)


def test_raw_strings_in_the_graph_match_python_encoding(
    exported: OnnxModel, trained: TrainedModel, snapshot: Snapshot
) -> None:
    _, holdout = split_holdout(read_snapshot(snapshot), FAST_TRAINING.holdout_fraction, TELEMETRY.entity)
    encoding = trained.encoding
    network = load_weights(Path(trained.weights_path), trained.hidden_units, encoding)
    np.testing.assert_allclose(
        onnx_predict(onnx_session(Path(exported.path)), holdout, encoding),
        predict(network, holdout, encoding),
        atol=STRICT.atol,
    )


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
    with pytest.raises(ParityError, match="disagrees with PyTorch"):
        _check(exported.model_copy(update={"path": str(broken)}), trained, snapshot)


def test_swapped_feature_order_fails_the_gate(
    exported: OnnxModel,
    trained: TrainedModel,
    snapshot: Snapshot,
    monkeypatch: pytest.MonkeyPatch,
    recompute: None,  # the gate must run, not be served from the cache
) -> None:
    import conveyor.export.runtime as runtime  # where the parity check's ONNX Runtime calls read the rows

    def swapped(frame: pd.DataFrame, encoding: FeatureEncoding) -> dict[str, np.ndarray]:
        inputs = original(frame, encoding)
        inputs["numeric"] = inputs["numeric"][:, ::-1].copy()
        return inputs

    original = runtime.onnx_inputs
    monkeypatch.setattr(runtime, "onnx_inputs", swapped)
    with pytest.raises(ParityError, match="flipped decisions"):
        _check(exported, trained, snapshot)
