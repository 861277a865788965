"""The edge-check flow times the newest version's bundle with its target's threads and holds it to a budget."""

from __future__ import annotations

import pytest
from prefect.client.schemas.objects import State

from conveyor.blocks import ConveyorStores
from conveyor.export.edge import LatencyBudget, LatencyReport
from conveyor.flows.edge_check import edge_check
from conveyor.registry.store import RegisteredVersion
from tests.fixtures.models import GATEWAY, StagedCandidate, register_candidate

MODEL = "edge-check-test"
GENEROUS = LatencyBudget(p99_ms=1_000, min_rows_per_s=1)


@pytest.fixture(scope="module")
def registered(candidate: StagedCandidate, stores: ConveyorStores) -> RegisteredVersion:
    return register_candidate(candidate, stores.model_path, MODEL, "edge-check-fixture")


def _check(**kwargs: object) -> State:
    state = edge_check(model_name=MODEL, return_state=True, **kwargs)
    assert isinstance(state, State)
    return state


def test_newest_bundle_is_timed_on_its_target(registered: RegisteredVersion) -> None:
    state = _check(budget=GENEROUS)
    assert state.is_completed(), state.message
    report = state.result()
    assert isinstance(report, LatencyReport)
    assert (report.target, report.threads) == (GATEWAY.name, GATEWAY.threads)
    assert report.p99_ms >= report.p50_ms > 0


def test_over_budget_fails_with_the_measured_figures(registered: RegisteredVersion) -> None:
    state = _check(budget=LatencyBudget(p99_ms=1e-6, min_rows_per_s=1))
    assert state.is_failed()
    assert "over its latency budget" in str(state.message)


def test_unknown_target_fails_naming_the_targets_there_are(registered: RegisteredVersion) -> None:
    state = _check(target="smartwatch", budget=GENEROUS)
    assert state.is_failed()
    assert "no bundle for target 'smartwatch'; it has: gateway" in str(state.message)
