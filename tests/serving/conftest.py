"""A model of each test's own in the session's model store, and real model servers (uvicorn on loopback) for it.

v1 of the model is the barely trained ``weak_candidate``, v2 the session's ``candidate``: two versions that predict
differently, so an answer tells which one gave it. Servers run in a thread of the test process (real sockets, real
uvicorn, real ONNX Runtime); the restart test starts `conveyor serve` as a process of its own.
"""

from __future__ import annotations

import json
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pandas as pd
import pytest

from conveyor.blocks import ConveyorStores
from conveyor.export.runtime import KNOWN_INPUTS_FILE
from conveyor.registry.aliases import move_alias, read_aliases
from conveyor.registry.store import RegisteredVersion
from conveyor.serving.run import bound_socket, http_server
from conveyor.serving.server import ModelServer
from conveyor.settings import ServingSettings
from tests.fixtures.models import ENCODING, StagedCandidate, register_candidate

FEATURES = [*ENCODING.numeric, *ENCODING.categorical]
# The server under test reads the aliases this often: a switch is seen within a tenth of a second.
POLL_SECONDS = 0.1


class Served(NamedTuple):
    """A running model server: its address, a keep-alive client on it, and its state (read-only for tests)."""

    url: str
    client: httpx.Client
    server: ModelServer


StartServer = Callable[..., Served]


def _new_model_name() -> str:
    return f"serve-{uuid.uuid4().hex[:8]}"


def _registered(
    stores: ConveyorStores, name: str, weak: StagedCandidate, strong: StagedCandidate
) -> list[RegisteredVersion]:
    """v1 (barely trained) and v2 (the session's candidate) of a model; no alias names them yet."""
    return [
        register_candidate(staged, stores.model_path, name, f"run-{uuid.uuid4().hex[:6]}") for staged in (weak, strong)
    ]


@pytest.fixture
def model_name() -> str:
    """A model of this test's own in the session's model store."""
    return _new_model_name()


@pytest.fixture
def versions(
    stores: ConveyorStores, candidate: StagedCandidate, weak_candidate: StagedCandidate, model_name: str
) -> list[RegisteredVersion]:
    """v1 (barely trained) and v2 (the session's candidate) of this test's model; no alias names them yet."""
    return _registered(stores, model_name, weak_candidate, candidate)


def put_in_production(stores: ConveyorStores, name: str, version: int) -> None:
    """Move production to a version as the deliver flow will (compare-and-swap on what it names now)."""
    current = read_aliases(stores.model_path, name).get("production")
    move_alias(stores.model_path, name, "production", version, current, via="deliver", reason="test")


def known_rows(version: RegisteredVersion) -> pd.DataFrame:
    """The features of a version's stored known inputs within the data contract (held-out rows, the extremes seen,
    an unseen category); the known inputs' zeros outside a feature's valid range are left out."""
    frame = pd.read_parquet(Path(version.path) / KNOWN_INPUTS_FILE, columns=FEATURES)
    inside = [
        frame[f].between(-math.inf if low is None else low, math.inf if high is None else high)
        for f, (low, high) in ENCODING.ranges.items()
    ]
    return frame[pd.concat(inside, axis=1).all(axis=1)].reset_index(drop=True)


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: JSON objects of plain values."""
    return [{str(column): value for column, value in row.items()} for row in frame.to_dict("records")]


def post_rows(served: Served, rows: list[dict[str, Any]], key: str | None = None) -> httpx.Response:
    """POST rows to /v1/predict as Python's json writes them (NaN and Infinity as the literals it allows)."""
    body = {"rows": rows, **({"key": key} if key is not None else {})}
    return served.client.post("/v1/predict", content=json.dumps(body), headers={"Content-Type": "application/json"})


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until ``condition`` held (polled every 20 ms); AssertionError naming ``what`` after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        time.sleep(0.02)
    return time.monotonic() - started


def ready(served: Served) -> bool:
    """Whether the server answers /readyz with 200."""
    return served.client.get("/readyz").status_code == 200


@contextmanager
def started_server(server: ModelServer) -> Iterator[Served]:
    """A running server for ``server`` and a keep-alive client on it."""
    with running(server) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Served(url, client, server)


@contextmanager
def running(server: ModelServer) -> Iterator[str]:
    """A real uvicorn server for ``server`` on a free loopback port, in a thread of this process; its URL."""
    listening = bound_socket("127.0.0.1", 0)
    http = http_server(server)
    thread = threading.Thread(target=http.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: http.started, 30, "the server's start")
        yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    finally:
        http.should_exit = True
        thread.join(timeout=30)
        listening.close()


def _model_server(stores: ConveyorStores, name: str, **settings: Any) -> ModelServer:
    """A model server for a model, polling every POLL_SECONDS; other settings by name."""
    chosen = ServingSettings(serving_poll_seconds=POLL_SECONDS, **settings)
    return ModelServer(stores.model_path, name, chosen)


@pytest.fixture
def start_server(stores: ConveyorStores, model_name: str) -> Iterator[StartServer]:
    """Start a server for this test's model (settings overridable by name); every one is stopped after the test."""
    with ExitStack() as started:

        def start(**settings: Any) -> Served:
            return started.enter_context(started_server(_model_server(stores, model_name, **settings)))

        yield start


@pytest.fixture
def in_production(stores: ConveyorStores, model_name: str, versions: list[RegisteredVersion]) -> RegisteredVersion:
    """v1 of this test's model, in production."""
    put_in_production(stores, model_name, versions[0].version)
    return versions[0]


@pytest.fixture
def served(start_server: StartServer, in_production: RegisteredVersion) -> Served:
    """A server for this test's model, ready: serving v1 in production."""
    started = start_server()
    wait_until(lambda: ready(started), 30, "readiness")
    return started


class Production(NamedTuple):
    """A server shared by a module's tests that only read: v1 of its own model in production, and both versions."""

    served: Served
    versions: list[RegisteredVersion]


@pytest.fixture(scope="module")
def production(
    stores: ConveyorStores, candidate: StagedCandidate, weak_candidate: StagedCandidate
) -> Iterator[Production]:
    """A ready server for a model of this module's own, serving v1 in production (tests must not move aliases)."""
    name = _new_model_name()
    registered = _registered(stores, name, weak_candidate, candidate)
    put_in_production(stores, name, 1)
    with started_server(_model_server(stores, name)) as served:
        wait_until(lambda: ready(served), 30, "readiness")
        yield Production(served, registered)
