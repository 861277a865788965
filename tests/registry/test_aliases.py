"""Aliases move by compare-and-swap, one at a time per model, and every move is in the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.registry.aliases import (
    ALIASES_FILE,
    AUDIT_FILE,
    AliasConflictError,
    AliasError,
    move_alias,
    read_aliases,
    read_audit,
    resolve_reference,
    rollback_alias,
)
from conveyor.registry.store import DamagedVersionError, RegisteredVersion
from tests.fixtures.models import CANDIDATE_NAME as NAME
from tests.fixtures.server import wait_for_event
from tests.registry.conftest import race_for_alias

Versions = tuple[RegisteredVersion, RegisteredVersion]


def test_a_move_names_the_version_and_is_logged_with_who_and_why(store: Path, two_versions: Versions) -> None:
    move = move_alias(store, NAME, "dev", 1, None, via="refit", reason="registered by refit")
    assert move is not None
    assert read_aliases(store, NAME) == {"dev": 1}
    (logged,) = read_audit(store, NAME)
    assert logged == move
    assert (logged.alias, logged.from_version, logged.to_version, logged.sequence) == ("dev", None, 1, 1)
    assert logged.by and logged.reason == "registered by refit" and not logged.forced
    event = wait_for_event("conveyor.model.promoted", f"conveyor.model.{NAME}.v1")
    assert event["payload"]["alias"] == "dev" and event["payload"]["sequence"] == 1


def test_a_move_that_expects_another_version_is_refused_naming_what_it_found(
    store: Path, two_versions: Versions
) -> None:
    move_alias(store, NAME, "dev", 1, None, via="refit", reason="first")
    with pytest.raises(AliasConflictError, match="dev of candidate names v1, not no version as expected"):
        move_alias(store, NAME, "dev", 2, None, via="refit", reason="second")
    assert read_aliases(store, NAME) == {"dev": 1}
    assert len(read_audit(store, NAME)) == 1


def test_moving_an_alias_to_the_version_it_names_moves_and_logs_nothing(store: Path, two_versions: Versions) -> None:
    move_alias(store, NAME, "dev", 1, None, via="refit", reason="first")
    assert move_alias(store, NAME, "dev", 1, 1, via="refit", reason="again") is None
    assert len(read_audit(store, NAME)) == 1


def test_of_two_moves_at_once_exactly_one_wins_and_the_log_matches(store: Path, two_versions: Versions) -> None:
    winner, loser = race_for_alias(store, "candidate-a")
    assert f"names v{winner}, not no version as expected" in loser
    assert read_aliases(store, NAME) == {"candidate-a": winner}
    assert [(m.sequence, m.to_version) for m in read_audit(store, NAME)] == [(1, winner)]


def test_staging_and_production_move_only_through_their_flows_or_by_force_with_a_reason(
    store: Path, two_versions: Versions
) -> None:
    with pytest.raises(AliasError, match="staging is protected: it moves only through the promote flow"):
        move_alias(store, NAME, "staging", 1, None, via="user", reason="by hand")
    with pytest.raises(AliasError, match="production is protected: it moves only through the deliver flow"):
        move_alias(store, NAME, "production", 1, None, via="promote", reason="the gate")
    with pytest.raises(AliasError, match="needs a reason"):
        move_alias(store, NAME, "production", 1, None, via="force", reason=" ", forced=True)
    assert read_aliases(store, NAME) == {} and read_audit(store, NAME) == []
    move_alias(store, NAME, "production", 1, None, via="force", reason="incident 42", forced=True)
    assert read_audit(store, NAME)[-1].forced


def test_rollback_restores_the_previous_version_and_is_logged(store: Path, two_versions: Versions) -> None:
    move_alias(store, NAME, "production", 1, None, via="deliver", reason="first release")
    move_alias(store, NAME, "production", 2, 1, via="deliver", reason="second release")
    move_alias(store, NAME, "production", 1, 2, via="deliver", reason="v1 released again")
    move_alias(store, NAME, "production", 2, 1, via="deliver", reason="third release")
    move = rollback_alias(store, NAME, "production", "v2 misbehaves")
    assert (move.from_version, move.to_version, move.kind) == (2, 1, "rolled_back")
    assert read_aliases(store, NAME) == {"production": 1}
    assert [m.kind for m in read_audit(store, NAME)][-1] == "rolled_back"
    wait_for_event("conveyor.model.rolled_back", f"conveyor.model.{NAME}.v1")
    # Rollbacks walk back through the releases (1, 2, 1, 2 → 1 → 2 → 1), never to and fro between the last two.
    assert rollback_alias(store, NAME, "production", "again").to_version == 2
    assert rollback_alias(store, NAME, "production", "and again").to_version == 1
    with pytest.raises(AliasError, match="has named only v1; there is no earlier version"):
        rollback_alias(store, NAME, "production", "once more")


@pytest.mark.parametrize(
    ("alias", "version", "problem"),
    [
        ("v2", 1, "looks like a version number"),
        ("3", 1, "looks like a version number"),
        ("Prod!", 1, "is not an alias name"),
        ("dev", 7, "candidate has no version 7 .registered: v1, v2."),
    ],
)
def test_bad_moves_are_refused_in_one_sentence_and_nothing_moves(
    store: Path, two_versions: Versions, alias: str, version: int, problem: str
) -> None:
    with pytest.raises(AliasError, match=problem):
        move_alias(store, NAME, alias, version, None, via="user", reason="try")
    assert not (store / NAME / ALIASES_FILE).exists() and not (store / NAME / AUDIT_FILE).exists()


def test_an_unknown_model_is_refused(store: Path, two_versions: Versions) -> None:
    with pytest.raises(AliasError, match="No model named other is registered"):
        move_alias(store, "other", "dev", 1, None, via="user", reason="try")


def test_a_version_with_a_tampered_file_is_never_pointed_at(store: Path, two_versions: Versions) -> None:
    onnx_file = Path(two_versions[1].onnx_path)
    registered = onnx_file.read_bytes()
    onnx_file.write_bytes(registered + b"\0")
    with pytest.raises(DamagedVersionError, match=r"candidate v2 is damaged: model\.onnx does not hold the bytes"):
        move_alias(store, NAME, "dev", 2, None, via="user", reason="try")
    onnx_file.write_bytes(registered)
    (Path(two_versions[1].path) / "weights.pt").unlink()
    with pytest.raises(DamagedVersionError, match=r"weights\.pt is missing"):
        resolve_reference(store, f"{NAME}:2")
    assert read_audit(store, NAME) == []


def test_a_move_the_log_missed_is_appended_by_the_next_move(store: Path, two_versions: Versions) -> None:
    move_alias(store, NAME, "dev", 1, None, via="refit", reason="first")
    move_alias(store, NAME, "dev", 2, 1, via="refit", reason="second")
    # A writer that died after renaming the alias file and before appending its line:
    log = store / NAME / AUDIT_FILE
    log.write_text(log.read_text().splitlines(keepends=True)[0] + '{"torn": ')
    move_alias(store, NAME, "dev", 1, 2, via="refit", reason="third")
    assert [(m.sequence, m.to_version) for m in read_audit(store, NAME)] == [(1, 1), (2, 2), (3, 1)]
    assert json.loads((store / NAME / ALIASES_FILE).read_text())["sequence"] == 3


def test_references_name_the_newest_an_alias_or_a_number(store: Path, two_versions: Versions) -> None:
    move_alias(store, NAME, "dev", 1, None, via="refit", reason="first")
    assert resolve_reference(store, NAME).version == 2
    assert resolve_reference(store, f"{NAME}@dev").version == 1
    assert resolve_reference(store, f"{NAME}:v2").version == resolve_reference(store, f"{NAME}:2").version == 2
    for reference, problem in [
        (f"{NAME}@staging", "candidate has no alias staging"),
        (f"{NAME}:two", "'two' is not a version number"),
        ("Bad Name", "is not a model reference"),
    ]:
        with pytest.raises(AliasError, match=problem):
            resolve_reference(store, reference)
