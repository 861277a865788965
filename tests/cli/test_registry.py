"""`conveyor registry`: what a user sees of versions, aliases, promotion, rollback, the audit log and diffs."""

from __future__ import annotations

import json
import uuid

import pytest

from conveyor.blocks import ConveyorStores
from conveyor.registry.aliases import read_aliases
from tests.fixtures.cli import run_cli
from tests.fixtures.models import StagedCandidate, register_candidate


@pytest.fixture
def model(stores: ConveyorStores, candidate: StagedCandidate, weak_candidate: StagedCandidate) -> str:
    """A model with two versions (the session's candidate, then a weak one) in the session's model store."""
    name = f"cli-{uuid.uuid4().hex[:8]}"
    for staged in (candidate, weak_candidate):
        register_candidate(staged, stores.model_path, name, "run")
    return name


def test_a_forced_release_needs_a_reason_then_shows_everywhere_and_rolls_back(
    model: str, stores: ConveyorStores
) -> None:
    unforced = run_cli("registry", "promote", model, "1", "--to", "production")
    assert unforced.returncode == 1
    assert "production is protected: it moves only through the deliver flow" in unforced.stderr
    reasonless = run_cli("registry", "promote", model, "1", "--to", "production", "--force")
    assert reasonless.returncode == 1 and "needs a reason (--reason)" in reasonless.stderr
    for version in ("1", "2"):
        forced = run_cli("registry", "promote", model, version, "--to", "production", "--force", "--reason", "hotfix")
        assert forced.returncode == 0, forced.stderr
    assert "→ v2 (forced), logged as move 2" in forced.stdout

    listed = json.loads(run_cli("registry", "ls", model, "--json").stdout)
    assert [(v["version"], v["aliases"]) for v in listed] == [(1, []), (2, ["production"])]
    shown = run_cli("registry", "show", f"{model}@production")
    assert f"{model} v2  aliases: production  (every file verified)" in shown.stdout

    rolled = run_cli("registry", "rollback", model, "--alias", "production", "--reason", "v2 misbehaves", "--json")
    assert rolled.returncode == 0, rolled.stderr
    assert json.loads(rolled.stdout)["kind"] == "rolled_back"
    assert read_aliases(stores.model_path, model) == {"production": 1}
    audit = json.loads(run_cli("registry", "audit", model, "--json").stdout)
    assert [(m["to_version"], m["forced"], m["reason"]) for m in audit] == [
        (1, True, "hotfix"), (2, True, "hotfix"), (1, False, "v2 misbehaves")
    ]  # fmt: skip


def test_a_stale_expectation_is_refused_naming_the_version_found(model: str) -> None:
    assert run_cli("registry", "promote", model, "1", "--to", "canary-eu").returncode == 0
    stale = run_cli("registry", "promote", model, "2", "--to", "canary-eu", "--expect", "none")
    assert stale.returncode == 1
    assert "canary-eu of" in stale.stderr and "names v1, not no version as expected" in stale.stderr
    assert "Traceback" not in stale.stderr


def test_diff_shows_what_differs_between_two_versions(model: str) -> None:
    rows = json.loads(run_cli("registry", "diff", f"{model}:1", f"{model}:2", "--json").stdout)
    fields = {row["field"] for row in rows}
    assert {"metrics.roc_auc", "params.epochs", "onnx.sha256"} <= fields
    assert "data.sha256" not in fields  # both were trained on the session's snapshot


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("show", "nobody-here@production"), "No model named nobody-here is registered"),
        (("show", "{model}:9"), "has no version 9"),
        (("promote", "{model}", "1", "--to", "7"), "'7' looks like a version number"),
        (("audit", "nobody-here"), "No model named nobody-here is registered"),
    ],
)
def test_bad_references_are_one_sentence(model: str, args: tuple[str, ...], problem: str) -> None:
    result = run_cli("registry", *(arg.format(model=model) for arg in args))
    assert result.returncode == 1 and problem in result.stderr and "Traceback" not in result.stderr
