"""A fresh model store per test, and registration into it as refit runs do."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

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
