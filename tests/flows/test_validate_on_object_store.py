"""The validate flow with its data store on object storage (s3://, configured in the stores block)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prefect.client.schemas.objects import State

from conveyor.blocks import DEFAULT_BLOCK_NAME, ConveyorStores
from conveyor.cache.ledger import decisions_of
from conveyor.data.quarantine import report_key
from conveyor.data.snapshots import Snapshot, snapshot_key
from conveyor.data.synthetic import generate_telemetry, write_partition
from conveyor.flows.validate import validate
from tests.fixtures.object_store import ObjectStore
from tests.fixtures.server import SETTINGS, flow_run_logs

DAY = dt.date(2026, 5, 9)


@pytest.fixture
def stores_on_s3(stores: ConveyorStores, object_store: ObjectStore) -> Iterator[ConveyorStores]:
    """The registered stores block, its data store moved to the bucket for the test (then moved back)."""
    on_s3 = ConveyorStores(
        landing_dir=stores.landing_dir,
        data_store=f"s3://{object_store.bucket}/conveyor",
        model_store=stores.model_store,
        quarantine_dir=stores.quarantine_dir,
        data_store_credentials=object_store.credentials,
    )
    on_s3.save(DEFAULT_BLOCK_NAME, overwrite=True)
    yield on_s3
    stores.save(DEFAULT_BLOCK_NAME, overwrite=True)


@pytest.fixture
def landed(stores_on_s3: ConveyorStores) -> Path:
    """A clean partition in the landing folder."""
    return write_partition(generate_telemetry(2_000, DAY), stores_on_s3.landing_path, DAY)


def _validated(partition: Path) -> State:
    """Run the validate flow on a landed partition; it must complete."""
    state = validate(partition=partition.name, announce=False, return_state=True)
    assert isinstance(state, State)
    assert state.is_completed(), state.message
    return state


def test_a_valid_batch_and_its_report_are_kept_in_the_bucket_and_a_rerun_hits_the_cache(
    landed: Path, object_store: ObjectStore
) -> None:
    snapshot = _validated(landed).result()
    assert isinstance(snapshot, Snapshot)
    keys = {o["Key"] for o in object_store.client().list_objects_v2(Bucket=object_store.bucket)["Contents"]}
    assert f"conveyor/{snapshot_key(snapshot.sha256)}" in keys
    report = f"conveyor/{report_key(snapshot.sha256)}"
    assert {f"{report}/report.md", f"{report}/report.json", f"{report}/data-docs/index.html"} <= keys

    again = _validated(landed)
    outcomes = {d.task: d.outcome for d in decisions_of(str(again.state_details.flow_run_id))}
    assert outcomes["Snapshot partition"] == outcomes["Validate snapshot"] == "hit"


def test_the_object_store_secret_never_reaches_the_logs_or_the_api(landed: Path, object_store: ObjectStore) -> None:
    state = _validated(landed)
    secret = object_store.credentials.secret_access_key.get_secret_value()
    assert "Validation report kept at s3://" in flow_run_logs(str(state.state_details.flow_run_id))
    assert secret not in flow_run_logs(str(state.state_details.flow_run_id))
    documents = httpx.post(f"{SETTINGS.api_url}/block_documents/filter", json={"include_secrets": False}).json()
    registered = next(d["data"] for d in documents if d["name"] == DEFAULT_BLOCK_NAME)
    assert registered["data_store_credentials"]["access_key_id"] == object_store.credentials.access_key_id
    assert set(registered["data_store_credentials"]["secret_access_key"]) == {"*"}
    assert secret not in str(documents)
