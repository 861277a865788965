"""Refits registering at once (refit/default beside refit/gpu) take turns through the model's registry lock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import conveyor.registry.register as registration
from conveyor.registry.candidate import Candidate
from conveyor.registry.lock import registry_lock
from conveyor.registry.register import register_candidate
from conveyor.registry.store import RegisteredVersion, list_versions
from tests.fixtures.models import GATEWAY, StagedCandidate

MODEL = "lock-test"


def _register_side_by_side(
    store: Path, candidates: dict[str, Candidate], gates: dict[str, threading.Event] | None = None
) -> dict[str, RegisteredVersion]:
    """Register each candidate from its own thread, as two refits on two pools would, and wait for both.

    A thread with a gate waits for it before it starts registering.
    """
    registered: dict[str, RegisteredVersion] = {}

    def register(name: str) -> None:
        if gates and name in gates:
            assert gates[name].wait(timeout=120), f"{name} was never let in"
        registered[name] = register_candidate(store, MODEL, candidates[name], [GATEWAY], f"run-{name}")

    threads = [threading.Thread(target=register, args=(name,), name=name) for name in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert set(registered) == set(candidates), "a registration did not finish"
    return registered


def test_two_refits_of_one_candidate_take_turns_and_register_it_once(
    candidate: StagedCandidate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_holds, asked, inside = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    @contextmanager
    def watched_lock(model_name: str) -> Iterator[None]:
        """The real lock, recording who holds it; the first holder keeps it until the second has asked for it."""
        second = threading.current_thread().name == "second"
        if second:
            asked.set()
        with registry_lock(model_name):
            order.append(f"{threading.current_thread().name} in")
            if second:
                inside.set()
            else:
                first_holds.set()  # only now does the second refit start
                assert asked.wait(timeout=120), "the second refit never asked for the lock"
                inside.wait(timeout=2)  # without a lock the second would be in by now, beside the first
            yield
            order.append(f"{threading.current_thread().name} out")

    monkeypatch.setattr(registration, "registry_lock", watched_lock)
    registered = _register_side_by_side(
        tmp_path, {"first": candidate.candidate, "second": candidate.candidate}, gates={"second": first_holds}
    )

    assert order == ["first in", "first out", "second in", "second out"]
    assert registered["first"] == registered["second"]
    assert [v.version for v in list_versions(tmp_path, MODEL)] == [registered["first"].version]


def test_two_candidates_registered_at_once_get_distinct_versions(candidate: StagedCandidate, tmp_path: Path) -> None:
    first = candidate.candidate
    second = first.model_copy(update={"params": first.params.model_copy(update={"seed": first.params.seed + 1})})
    registered = _register_side_by_side(tmp_path, {"first": first, "second": second})

    assert sorted(v.version for v in registered.values()) == [1, 2]
    listed = list_versions(tmp_path, MODEL)
    assert sorted(v.version for v in listed) == [1, 2]
    assert {v.version: v.flow_run_id for v in listed} == {
        registered["first"].version: "run-first",
        registered["second"].version: "run-second",
    }
