"""The promote flow moves staging to a challenger only when it beats production on the same rows, and says why not."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prefect.client.schemas.objects import State

from conveyor.blocks import ConveyorStores
from conveyor.export.onnx import ParityReport, expected_column
from conveyor.flows.promote import promote
from conveyor.gate.policy import GatePolicy, LatencyBudget
from conveyor.gate.verdict import VERDICT_FILE
from conveyor.registry.aliases import move_alias, read_aliases, read_audit
from conveyor.registry.store import RegisteredVersion
from tests.fixtures.models import ENCODING, StagedCandidate, register_candidate
from tests.fixtures.server import flow_run_artifacts, wait_for_event

FAST_GATE = GatePolicy(resamples=300, latency=LatencyBudget(calls=50))


@pytest.fixture
def model_name() -> str:
    """A model of this test's own in the session's model store."""
    return f"gate-{uuid.uuid4().hex[:8]}"


def _register(staged: StagedCandidate, stores: ConveyorStores, name: str) -> RegisteredVersion:
    return register_candidate(staged, stores.model_path, name, f"run-{uuid.uuid4().hex[:6]}")


def _in_production(stores: ConveyorStores, version: RegisteredVersion) -> None:
    move_alias(stores.model_path, version.name, "production", version.version, None, via="deliver", reason="test")


def _gate(name: str, version: int, policy: GatePolicy = FAST_GATE, **options: Any) -> State[Any]:
    state: State[Any] = promote(model_name=name, version=version, policy=policy, return_state=True, **options)
    return state


def _contest(
    stores: ConveyorStores, name: str, champion: StagedCandidate, challenger: StagedCandidate
) -> tuple[RegisteredVersion, State[Any]]:
    """Register the champion and put it in production, then register the challenger and gate it."""
    _in_production(stores, _register(champion, stores, name))
    version = _register(challenger, stores, name)
    return version, _gate(name, version.version)


def _artifact(state: State[Any], key: str) -> str:
    return str(flow_run_artifacts(str(state.state_details.flow_run_id))[key]["data"])


def test_the_first_version_passes_on_floors_alone_and_reaches_staging(
    stores: ConveyorStores, candidate: StagedCandidate, model_name: str
) -> None:
    first = _register(candidate, stores, model_name)
    state = _gate(model_name, first.version)
    assert state.is_completed(), state.message
    assert read_aliases(stores.model_path, model_name) == {"staging": first.version}
    (move,) = read_audit(stores.model_path, model_name)
    verdict = (Path(first.path) / VERDICT_FILE).read_text()
    assert move.via == "promote" and move.evidence_sha256 and verdict
    assert "no production version yet: the floors alone decide" in _artifact(state, "gate-verdict")
    wait_for_event("conveyor.model.promoted", f"conveyor.model.{model_name}.v{first.version}")


def test_a_better_challenger_reaches_staging_with_its_interval_reported(
    stores: ConveyorStores, candidate: StagedCandidate, weak_candidate: StagedCandidate, model_name: str
) -> None:
    better, state = _contest(stores, model_name, weak_candidate, candidate)
    assert state.is_completed(), state.message
    assert read_aliases(stores.model_path, model_name)["staging"] == better.version
    report = _artifact(state, "gate-verdict")
    assert "roc_auc improvement over v1" in report and "non-inferior and improved" in report
    assert "| roc_auc |" in report and "## Slices" in report


def test_a_worse_challenger_is_refused_naming_the_check_and_nothing_moves(
    stores: ConveyorStores, candidate: StagedCandidate, weak_candidate: StagedCandidate, model_name: str
) -> None:
    worse, state = _contest(stores, model_name, candidate, weak_candidate)
    assert state.is_failed()
    assert f"{model_name} v{worse.version} did not pass the gate to staging (" in str(state.message)
    assert "champion: roc_auc improvement over v1" in str(state.message)
    assert "staging" not in read_aliases(stores.model_path, model_name)
    assert [m.alias for m in read_audit(stores.model_path, model_name)] == ["production"]
    event = wait_for_event("conveyor.model.rejected", f"conveyor.model.{model_name}.v{worse.version}")
    assert "champion" in event["payload"]["failed_checks"]


def test_models_of_either_family_are_compared_on_the_same_rows(
    stores: ConveyorStores, candidate: StagedCandidate, xgboost_candidate: StagedCandidate, model_name: str
) -> None:
    trees, state = _contest(stores, model_name, candidate, xgboost_candidate)
    verdict = json.loads((Path(trees.path) / VERDICT_FILE).read_text())
    assert verdict["families"] == {"challenger": "xgboost", "champion": "torch"}
    overall = verdict["comparison"]["overall"]
    assert overall["rows"] == verdict["rows"] > 0 and overall["delong"] is not None  # paired: one set of rows
    gain = overall["metrics"]["roc_auc"]["improvement"]["value"]
    roc = overall["metrics"]["roc_auc"]
    assert gain == pytest.approx(roc["challenger"]["value"] - roc["champion"]["value"])
    staged = read_aliases(stores.model_path, model_name).get("staging")
    assert (staged == trees.version) == state.is_completed()


def test_a_challenger_over_the_latency_budget_is_refused(
    stores: ConveyorStores, candidate: StagedCandidate, model_name: str
) -> None:
    version = _register(candidate, stores, model_name)
    strict = FAST_GATE.model_copy(update={"latency": LatencyBudget(calls=50, p99_ms_batch_1=0.000001)})
    state = _gate(model_name, version.version, strict)
    assert state.is_failed() and "latency: batch-1 p99" in str(state.message)
    assert read_aliases(stores.model_path, model_name) == {}
    assert "| latency | **FAIL** |" in _artifact(state, "gate-verdict")


def _refused_with_parity(
    stores: ConveyorStores, candidate: StagedCandidate, name: str, parity: ParityReport, problem: str
) -> None:
    """Register the candidate with other parity evidence; the gate must refuse it naming the problem, moving nothing."""
    doctored = candidate.candidate.model_copy(update={"parity": parity})
    version = _register(StagedCandidate(doctored, candidate.bundles), stores, name)
    state = _gate(name, version.version)
    assert state.is_failed() and problem in str(state.message)
    assert read_aliases(stores.model_path, name) == {}


def test_a_challenger_without_parity_evidence_is_refused(
    stores: ConveyorStores, candidate: StagedCandidate, model_name: str
) -> None:
    unproven = candidate.candidate.parity.model_copy(update={"sets": {}})
    _refused_with_parity(stores, candidate, model_name, unproven, "parity: the version records no ONNX parity evidence")


def test_a_challenger_that_misses_its_known_outputs_is_refused(
    stores: ConveyorStores, candidate: StagedCandidate, model_name: str, tmp_path: Path
) -> None:
    parity = candidate.candidate.parity
    known = pd.read_parquet(parity.known_inputs)
    known[expected_column(ENCODING)] = known[expected_column(ENCODING)] * 0.5
    drifted = tmp_path / "known.parquet"
    known.to_parquet(drifted, index=False)
    moved = parity.model_copy(update={"known_inputs": str(drifted)})
    _refused_with_parity(stores, candidate, model_name, moved, "known inputs: ")


def test_two_gates_at_once_leave_one_alias_state_and_a_complete_log(
    stores: ConveyorStores, candidate: StagedCandidate, model_name: str, recompute: None
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    versions = [_register(candidate, stores, model_name).version for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        states = list(pool.map(lambda v: _gate(model_name, v), versions))
    completed = [v for v, s in zip(versions, states, strict=True) if s.is_completed()]
    refused = [s for s in states if not s.is_completed()]
    # Whichever order they finish in: each completed gate is one move, each refused one lost the compare-and-swap.
    assert all("another move came first" in str(s.message) for s in refused), [s.message for s in refused]
    moves = read_audit(stores.model_path, model_name)
    assert [m.to_version for m in moves] == completed or [m.to_version for m in moves] == completed[::-1]
    assert [m.from_version for m in moves] == [None, *[m.to_version for m in moves][:-1]]  # a chain, no lost update
    assert read_aliases(stores.model_path, model_name) == {"staging": moves[-1].to_version}


@pytest.mark.parametrize(
    ("version", "target", "problem"),
    [(99, "staging", "has no version 99"), (1, "production", "production moves through the deliver flow"),
     (1, "v2", "looks like a version number")],
)  # fmt: skip
def test_bad_requests_fail_in_one_sentence_and_move_nothing(
    stores: ConveyorStores, candidate: StagedCandidate, model_name: str, version: int, target: str, problem: str
) -> None:
    _register(candidate, stores, model_name)
    state = _gate(model_name, version, target=target)
    assert state.is_failed() and problem in str(state.message)
    assert read_aliases(stores.model_path, model_name) == {} and read_audit(stores.model_path, model_name) == []
