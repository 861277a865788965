"""The refit flow turns a landed partition into a registered, ONNX-exported model version, or fails saying why."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State

from conveyor.blocks import ConveyorStores
from conveyor.cache.ledger import decisions_of
from conveyor.data.snapshots import Snapshot
from conveyor.data.synthetic import Corruption, generate_telemetry, write_partition
from conveyor.export.families import FAMILIES
from conveyor.export.onnx import ParityThresholds, onnx_model, onnx_predict, onnx_session
from conveyor.flows.refit import refit
from conveyor.io.files import sha256_file
from conveyor.models.boosting import BOOSTER_FILE, load_booster, predict_booster
from conveyor.registry.aliases import read_aliases, read_audit
from conveyor.registry.store import EDGE_FOLDER, MANIFEST, RegisteredVersion, list_versions
from tests.fixtures.models import FAST_BOOSTING, FAST_TRAINING
from tests.fixtures.server import flow_run_logs

MODEL = "refit-test"


def _refit(**kwargs: object) -> State:
    state = refit(training=FAST_TRAINING, model_name=MODEL, return_state=True, **kwargs)
    assert isinstance(state, State)
    return state


def _versions(stores: ConveyorStores) -> list[RegisteredVersion]:
    return list_versions(stores.model_path, MODEL)


def test_refit_registers_a_good_model_with_its_data_hash(landed_partition: Path, stores: ConveyorStores) -> None:
    # Computed, not served from the cache: every step's artifact belongs to this run.
    state = _refit(partition=landed_partition.name, force_recompute=True)
    assert state.is_completed(), state.message
    version = state.result()
    assert isinstance(version, RegisteredVersion)
    assert version.metrics["roc_auc"] >= 0.8
    assert version.data_sha256 == sha256_file(landed_partition)
    folder = Path(version.path)
    assert version.family == json.loads((folder / MANIFEST).read_text())["family"] == "torch"
    assert version.onnx_sha256 == sha256_file(Path(version.onnx_path))
    assert {"model.onnx", "weights.pt", "evaluation.png", "manifest.json", "report.md", "parity_inputs.parquet"} <= {
        p.name for p in folder.iterdir()
    }
    assert Path(version.edge_bundles["gateway"]).is_file()
    assert version in _versions(stores)
    # dev follows every registration, and the move is in the audit log.
    assert read_aliases(stores.model_path, version.name)["dev"] == version.version
    assert read_audit(stores.model_path, version.name)[-1].via == "refit"

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[runs[0].id]))
        )
    assert {"held-out-metrics", "model-version", "onnx-parity", "edge-accuracy-gateway"} <= {a.key for a in artifacts}
    assert any(a.type == "progress" for a in artifacts)


def test_missing_partition_fails_saying_where_it_looked(stores: ConveyorStores) -> None:
    before = _versions(stores)
    state = _refit(day=dt.date(2020, 1, 1))
    assert state.is_failed()
    assert "No landed partition at" in str(state.message)
    assert "telemetry-2020-01-01.parquet" in str(state.message)
    assert _versions(stores) == before


def test_corrupt_partition_never_reaches_the_registry(stores: ConveyorStores) -> None:
    day = dt.date(2026, 5, 5)
    frame = generate_telemetry(5_000, day, corrupt=(Corruption.RANGE,))
    landed = write_partition(frame, stores.landing_path, day)
    before = _versions(stores)
    state = _refit(partition=landed.name)
    assert state.is_failed()
    assert "broke the telemetry contract" in str(state.message)
    assert "rpm" in str(state.message)
    assert _versions(stores) == before


def test_export_that_disagrees_with_pytorch_is_not_registered(landed_partition: Path, stores: ConveyorStores) -> None:
    before = _versions(stores)
    state = _refit(partition=landed_partition.name, parity=ParityThresholds(atol=1e-15, rtol=0))
    assert state.is_failed()
    assert "disagrees with PyTorch" in str(state.message)
    assert _versions(stores) == before


@pytest.mark.parametrize(
    ("bad", "named"), [({"model_name": "Bad Name!"}, "model_name"), ({"training": {"epochs": 0}}, "epochs")]
)
def test_invalid_parameters_are_rejected_naming_the_parameter(
    bad: dict[str, object], named: str, stores: ConveyorStores
) -> None:
    before = _versions(stores)
    state = refit(**{"training": FAST_TRAINING, "model_name": MODEL, **bad}, return_state=True)
    assert state.is_failed()
    assert "invalid parameters" in str(state.message)
    assert named in str(state.message)
    assert _versions(stores) == before


def test_refit_trains_on_a_snapshot_named_by_its_hash(snapshot: Snapshot, stores: ConveyorStores) -> None:
    state = _refit(snapshot=snapshot.sha256)
    assert state.is_completed(), state.message
    assert state.result().data_sha256 == snapshot.sha256


def test_unknown_or_malformed_snapshot_hash_fails_saying_so(stores: ConveyorStores) -> None:
    assert "No snapshot 000000000000" in str(_refit(snapshot="0" * 64).message)
    assert "64 hex digits" in str(_refit(snapshot="not-a-hash").message)


@pytest.fixture(scope="module")
def xgboost_refits(landed_partition: Path, stores: ConveyorStores) -> tuple[State, State]:
    """An XGBoost refit of the session's partition, and the same refit again, unchanged."""
    first, again = [_refit(partition=landed_partition.name, family="xgboost", boosting=FAST_BOOSTING) for _ in range(2)]
    assert first.is_completed(), first.message
    assert again.is_completed(), again.message
    return first, again


def test_an_xgboost_refit_registers_its_booster_and_an_onnx_file_that_passed_parity(
    xgboost_refits: tuple[State, State], landed_partition: Path
) -> None:
    version = xgboost_refits[0].result()
    folder = Path(version.path)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["family"] == version.family == "xgboost"
    assert manifest["params"] == FAST_BOOSTING.model_dump()
    assert sha256_file(Path(version.onnx_path)) == manifest["onnx"]["sha256"] == version.onnx_sha256
    parity = manifest["onnx"]["parity"]["sets"]
    assert set(parity) == {"held-out", "known inputs", "production sample"}
    assert all(p["rows"] > 0 and p["out_of_tolerance"] == p["decision_flips"] == 0 for p in parity.values())
    assert {BOOSTER_FILE, "model.onnx", "evaluation.png", "parity_inputs.parquet"} <= set(manifest["files"])
    assert "weights.pt" not in manifest["files"]
    assert sha256_file(folder / BOOSTER_FILE) == manifest["training"]["model_sha256"]

    # ONNX Runtime scores raw rows as the registered booster does.
    rows = pd.read_parquet(landed_partition).head(500)
    encoding = onnx_model(Path(version.onnx_path)).encoding
    scored = onnx_predict(onnx_session(Path(version.onnx_path)), rows, encoding)
    booster = predict_booster(load_booster(folder / BOOSTER_FILE), rows, encoding)
    np.testing.assert_allclose(scored, booster, atol=ParityThresholds().atol)


def test_an_xgboost_refit_registers_no_edge_bundle_and_says_why(xgboost_refits: tuple[State, State]) -> None:
    first = xgboost_refits[0]
    version = first.result()
    assert version.edge_bundles == {}
    assert not (Path(version.path) / EDGE_FOLDER).exists()
    why = FAMILIES["xgboost"].why_no_edge
    assert why is not None
    assert f"## Edge variants\n\nNone: {why}." in (Path(version.path) / "report.md").read_text()
    assert f"No edge bundles for this xgboost model: {why}." in flow_run_logs(str(first.state_details.flow_run_id))


def test_an_unchanged_xgboost_refit_reuses_every_cacheable_task(xgboost_refits: tuple[State, State]) -> None:
    first, again = xgboost_refits
    decisions = decisions_of(str(again.state_details.flow_run_id))
    cacheable = [d for d in decisions if d.outcome != "not cached"]
    assert {d.task for d in cacheable} >= {
        "Train XGBoost model",
        "Export XGBoost model to ONNX",
        "Register model version",
    }
    assert {d.outcome for d in cacheable} == {"hit"}, cacheable
    assert again.result() == first.result()
