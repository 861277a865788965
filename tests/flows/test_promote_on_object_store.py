"""The promote flow and `conveyor registry` with the model store in a bucket (s3://, configured in the stores block)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prefect.client.schemas.objects import State

from conveyor.blocks import DEFAULT_BLOCK_NAME, ConveyorStores
from conveyor.flows.promote import promote
from conveyor.gate.verdict import EVIDENCE_FOLDER, VERDICT_FILE
from conveyor.registry.aliases import read_aliases, read_audit
from conveyor.registry.storage import ModelStore
from tests.fixtures.cli import run_cli
from tests.fixtures.models import StagedCandidate, register_candidate
from tests.fixtures.object_store import ObjectStore
from tests.flows.test_promote import FAST_GATE


@pytest.fixture
def models_on_s3(stores: ConveyorStores, object_store: ObjectStore) -> Iterator[ModelStore]:
    """The registered stores block, its model store moved to the bucket for the test (then moved back)."""
    url = f"s3://{object_store.bucket}/models"
    stores.model_copy(update={"model_store": url, "model_store_credentials": object_store.credentials}).save(
        DEFAULT_BLOCK_NAME, overwrite=True
    )
    yield ModelStore.of(ConveyorStores.resolve())
    stores.save(DEFAULT_BLOCK_NAME, overwrite=True)


def test_the_gate_moves_staging_in_the_bucket_and_the_cli_reads_it_there(
    models_on_s3: ModelStore, candidate: StagedCandidate, object_store: ObjectStore
) -> None:
    name = f"gate-{uuid.uuid4().hex[:8]}"
    version = register_candidate(candidate, models_on_s3, name, "run-a")
    state: State[Any] = promote(model_name=name, version=version.version, policy=FAST_GATE, return_state=True)
    assert state.is_completed(), state.message
    assert read_aliases(models_on_s3, name) == {"staging": version.version}
    (move,) = read_audit(models_on_s3, name)
    assert move.via == "promote" and move.evidence_sha256
    listing = object_store.client().list_objects_v2(Bucket=object_store.bucket, Prefix=f"models/{name}/")
    keys = {o["Key"].removeprefix(f"models/{name}/") for o in listing["Contents"]}
    assert {f"v1/{VERDICT_FILE}", f"{EVIDENCE_FOLDER}/{move.evidence_sha256}.json", "audit/00000001.json"} <= keys

    shown = run_cli("registry", "show", f"{name}@staging", "--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["aliases"] == ["staging"] and record["gate"]["target"] == "staging"
    assert object_store.credentials.secret_access_key.get_secret_value() not in shown.stdout + shown.stderr
