"""Latency is measured on edge hardware: the edge-check deployment runs on the edge pool's worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prefect import get_client

from conveyor.blocks import ConveyorStores
from conveyor.settings import ConveyorSettings
from conveyor.stack import local as stack
from tests.fixtures.cli import run_cli
from tests.fixtures.models import StagedCandidate, register_candidate

pytestmark = pytest.mark.slow
MODEL = "edge-pool-test"


@pytest.fixture(scope="module")
def edge_worker(stores: ConveyorStores, settings: ConveyorSettings) -> Iterator[None]:
    """The deployed stack plus a process worker for the edge pool only."""
    assert run_cli("up").returncode == 0
    stack.start_workers(
        settings.model_copy(update={"stack": settings.stack.model_copy(update={"worker_pools": ["edge"]})})
    )
    yield


def test_edge_check_deployment_runs_on_the_edge_pool(
    edge_worker: None, candidate: StagedCandidate, stores: ConveyorStores
) -> None:
    version = register_candidate(candidate, stores.model_path, MODEL, "edge-pool-fixture")
    result = run_cli(
        "run", "edge-check/default", "-p", f"model_name={MODEL}", "-p", 'budget={"p99_ms": 1000, "min_rows_per_s": 1}',
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["state"] == "COMPLETED"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(outcome["flow_run_id"])
    assert flow_run.work_pool_name == "edge"
    assert flow_run.parameters["model_name"] == MODEL
    assert version.edge_bundles["gateway"]
