"""The promote flow: the champion-versus-challenger gate, and the alias move it earns."""

from __future__ import annotations

from prefect import flow
from pydantic import Field

from conveyor.blocks import ConveyorStores
from conveyor.data.snapshots import find_snapshot
from conveyor.data.store import DataStore
from conveyor.gate.policy import GatePolicy
from conveyor.gate.tasks import act_on_verdict, find_contest, judge, publish_verdict
from conveyor.gate.verdict import GateVerdict
from conveyor.io.files import FolderName
from conveyor.registry.storage import ModelStore
from conveyor.schema.catalog import find_spec

DEFAULT_POLICY = GatePolicy()


@flow(name="promote", log_prints=True, persist_result=True, result_serializer="json")
def promote(
    model_name: FolderName = Field(description="Registry name of the model, e.g. failure-predictor."),
    version: int = Field(ge=1, description="The challenger: the version to gate (e.g. the one refit registered)."),
    target: str = Field("staging", description="The alias to move when the gate passes: staging, or your own."),
    policy: GatePolicy = Field(DEFAULT_POLICY, description="Floors, margins, slices, bootstrap and latency budget."),
    dataset: str | None = Field(
        None, description="Dataset spec by name; empty: the one the version was trained on (else CONVEYOR_DATASET)."
    ),
) -> GateVerdict:
    """Gate a version against production on the same held-out rows; move the target alias to it only if it passes."""
    stores = ConveyorStores.resolve()
    model_store = ModelStore.of(stores)
    contest = find_contest(model_store, model_name, version, target)
    spec = find_spec(dataset or contest.manifest.get("dataset"))
    snapshot = find_snapshot(DataStore.of(stores), contest.challenger.data_sha256)
    verdict = judge(contest, spec, snapshot, policy)
    evidence = publish_verdict(model_store, verdict)
    act_on_verdict(model_store, contest, verdict, evidence)
    return verdict
