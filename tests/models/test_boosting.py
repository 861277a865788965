"""XGBoost on real Dask workers learns like the torch model, reproducibly, and its ONNX export predicts what it does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.export.onnx import OnnxModel, ParityError, ParityThresholds, onnx_predict, onnx_session
from conveyor.export.xgboost import check_xgboost_parity, export_xgboost
from conveyor.models.boosting import (
    ROUNDS_FILE,
    BoostedModel,
    BoostingParams,
    evaluate_xgboost,
    load_booster,
    predict_booster,
    train_xgboost,
)
from conveyor.models.cluster import ClusterSpec
from conveyor.models.evaluation import evaluate_model
from conveyor.models.training import TrainedModel
from conveyor.models.tuning import run_trial
from conveyor.schema.telemetry import TELEMETRY
from tests.fixtures.models import FAST_BOOSTING, FAST_TRAINING, StagedCandidate

TWO_WORKERS = ClusterSpec(workers=2)
STRICT = ParityThresholds()


@pytest.fixture(scope="module")
def boosted(snapshot: Snapshot) -> BoostedModel:
    """XGBoost trained through xgboost.dask on a LocalCluster of two worker processes."""
    return train_xgboost(snapshot, TELEMETRY, FAST_BOOSTING, TWO_WORKERS)


@pytest.fixture(scope="module")
def exported(boosted: BoostedModel) -> OnnxModel:
    return export_xgboost(boosted, {"model_name": "test", "data_sha256": "abc"})


def _holdout(snapshot: Snapshot) -> pd.DataFrame:
    return split_holdout(read_snapshot(snapshot), FAST_BOOSTING.holdout_fraction, TELEMETRY.entity)[1]


def test_xgboost_on_two_dask_workers_learns_as_well_as_the_torch_model(
    boosted: BoostedModel, trained: TrainedModel, snapshot: Snapshot
) -> None:
    assert boosted.world_size == 2
    xgb_metrics = evaluate_xgboost(boosted, snapshot, FAST_BOOSTING.holdout_fraction).metrics
    torch_metrics = evaluate_model(trained, snapshot, FAST_TRAINING.holdout_fraction).metrics
    assert xgb_metrics.holdout_rows == torch_metrics.holdout_rows  # the same held-out machines
    assert xgb_metrics.roc_auc > 0.85
    assert xgb_metrics.roc_auc > torch_metrics.roc_auc - 0.03
    assert xgb_metrics.roc_auc == pytest.approx(boosted.final_holdout_auc, abs=1e-4)


def test_the_same_seed_gives_a_bit_identical_booster_on_two_dask_runs(
    boosted: BoostedModel, snapshot: Snapshot, recompute: None
) -> None:
    again = train_xgboost(snapshot, TELEMETRY, FAST_BOOSTING, TWO_WORKERS)
    assert again.model_path != boosted.model_path  # trained again, not served from the cache
    assert again.model_sha256 == boosted.model_sha256


def test_a_different_seed_gives_a_different_booster(snapshot: Snapshot, recompute: None) -> None:
    one = train_xgboost(snapshot, TELEMETRY, FAST_BOOSTING)
    same = train_xgboost(snapshot, TELEMETRY, FAST_BOOSTING)
    other = train_xgboost(snapshot, TELEMETRY, FAST_BOOSTING.model_copy(update={"seed": 1}))
    assert one.world_size == 1
    assert one.model_path != same.model_path
    assert one.model_sha256 == same.model_sha256 != other.model_sha256


def test_the_booster_is_kept_as_json_and_every_round_is_logged(boosted: BoostedModel) -> None:
    model = json.loads(Path(boosted.model_path).read_text())
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    assert len(trees) == FAST_BOOSTING.rounds
    rounds = [json.loads(line) for line in (Path(boosted.model_path).parent / ROUNDS_FILE).read_text().splitlines()]
    assert [r["round"] for r in rounds] == list(range(1, FAST_BOOSTING.rounds + 1))
    assert rounds[-1]["train logloss"] < rounds[0]["train logloss"]


def test_a_trial_scores_what_the_training_task_scores(snapshot: Snapshot) -> None:
    in_process = train_xgboost(snapshot, TELEMETRY, FAST_BOOSTING)
    trial = run_trial(snapshot, in_process.encoding, FAST_BOOSTING)
    assert trial.model_sha256 == in_process.model_sha256
    assert trial.metrics.roc_auc == pytest.approx(in_process.final_holdout_auc, abs=1e-4)


def test_onnx_export_matches_xgboost_under_onnx_runtime_on_every_row_set(
    exported: OnnxModel, boosted: BoostedModel, snapshot: Snapshot, landed_partition: Path
) -> None:
    report = check_xgboost_parity(exported, boosted, snapshot, FAST_BOOSTING.holdout_fraction, STRICT, landed_partition)
    assert set(report.sets) == {"held-out", "known inputs", "production sample"}
    for parity in report.sets.values():
        assert parity.rows > 0
        assert parity.max_abs_error <= STRICT.atol
        assert parity.decision_flips == 0
    holdout = _holdout(snapshot)
    np.testing.assert_allclose(
        onnx_predict(onnx_session(Path(exported.path)), holdout, boosted.encoding),
        predict_booster(load_booster(Path(boosted.model_path)), holdout, boosted.encoding),
        atol=STRICT.atol,
    )


def test_the_onnx_graph_takes_the_torch_exports_raw_telemetry_signature(
    exported: OnnxModel, candidate: StagedCandidate
) -> None:
    def signature(path: str) -> list[tuple[str, int, int]]:
        graph = onnx.load(path).graph
        return [
            (v.name, v.type.tensor_type.elem_type, len(v.type.tensor_type.shape.dim))
            for v in [*graph.input, *graph.output]
        ]

    assert signature(exported.path) == signature(candidate.candidate.exported.path)
    metadata = {p.key: p.value for p in onnx.load(exported.path).metadata_props}
    assert (metadata["model_family"], metadata["data_sha256"]) == ("xgboost", "abc")


def test_the_parity_gate_fails_an_export_of_another_booster(exported: OnnxModel, snapshot: Snapshot) -> None:
    other = train_xgboost(snapshot, TELEMETRY, BoostingParams(rounds=5, max_depth=2))
    with pytest.raises(ParityError, match="disagrees with XGBoost"):
        check_xgboost_parity(exported, other, snapshot, FAST_BOOSTING.holdout_fraction, STRICT, None)
