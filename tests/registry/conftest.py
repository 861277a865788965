"""A fresh model store per test, and registration into it as refit runs do."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.registry.aliases import AliasConflictError, move_alias
from conveyor.registry.storage import ModelStore
from conveyor.registry.store import RegisteredVersion
from tests.fixtures.models import CANDIDATE_NAME, StagedCandidate, register_candidate

Register = Callable[[str], RegisteredVersion]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """An empty model store."""
    return tmp_path / "models"


@pytest.fixture
def register(candidate: StagedCandidate, store: Path) -> Register:
    """Register copies of the candidate into a fresh model store, as runs would."""
    return lambda run_id: register_candidate(candidate, store, CANDIDATE_NAME, run_id)


@pytest.fixture
def two_versions(register: Register, recompute: None) -> tuple[RegisteredVersion, RegisteredVersion]:
    """Versions 1 and 2 of the candidate model (the same model, registered by two runs that recomputed)."""
    return register("run-a"), register("run-b")


def race_for_alias(store: ModelStore | Path, alias: str, name: str = CANDIDATE_NAME) -> tuple[int, str]:
    """Two threads move a new alias at once, to v1 and to v2: the version that won, and the loser's refusal."""
    outcomes: dict[int, str] = {}

    def promote(version: int) -> None:
        try:
            move_alias(store, name, alias, version, None, via="user", reason=f"race to v{version}")
            outcomes[version] = "won"
        except AliasConflictError as error:
            outcomes[version] = str(error)

    racers = [threading.Thread(target=promote, args=(v,)) for v in (1, 2)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    (winner,) = [v for v, outcome in outcomes.items() if outcome == "won"]
    (loser,) = [outcome for outcome in outcomes.values() if outcome != "won"]
    return winner, loser
