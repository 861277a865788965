"""The refit flow turns a landed partition into a registered, ONNX-exported model version, or fails saying why."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import State

from conveyor.blocks import ConveyorStores
from conveyor.data.snapshots import Snapshot
from conveyor.data.synthetic import Corruption, generate_telemetry, write_partition
from conveyor.export.onnx import ParityThresholds
from conveyor.flows.refit import refit
from conveyor.io.files import sha256_file
from conveyor.registry.store import RegisteredVersion, list_versions
from tests.fixtures.models import FAST_TRAINING

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
    assert {"model.onnx", "weights.pt", "evaluation.png", "manifest.json", "report.md", "parity_inputs.parquet"} <= {
        p.name for p in folder.iterdir()
    }
    assert Path(version.edge_bundles["gateway"]).is_file()
    assert version in _versions(stores)

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
