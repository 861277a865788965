"""Shared fixtures: one real Prefect server per session, temporary stores, data made once."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

# Prefect reads its settings when first imported, so the whole session's environment is set
# here, before any test module imports prefect: a private state folder and a free port.
_STATE_DIR = Path(tempfile.mkdtemp(prefix="conveyor-tests-"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


for _name in [n for n in os.environ if n.startswith("CONVEYOR_")]:
    del os.environ[_name]
os.environ["CONVEYOR_STATE_DIR"] = str(_STATE_DIR)
os.environ["CONVEYOR_SERVER_PORT"] = str(_free_port())

from blocks.settings import ConveyorSettings, configure_prefect_env  # noqa: E402

SETTINGS = configure_prefect_env()

from blocks.stores import ConveyorStores  # noqa: E402
from deployments import stack  # noqa: E402
from tasks.data import Snapshot, snapshot_partition  # noqa: E402
from tasks.synthetic import generate_telemetry, write_partition  # noqa: E402
from tasks.training import TrainedModel, TrainingParams, train_model  # noqa: E402

# Small enough to train in seconds, large enough (200+ machines) for a stable held-out AUC.
TRAINING_ROWS = 20_000
FAST_TRAINING = TrainingParams(epochs=6)
SESSION_DAY = dt.date(2026, 1, 15)


@pytest.fixture(scope="session")
def settings() -> ConveyorSettings:
    """The settings every test and every process started by a test shares."""
    return SETTINGS


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """A real Prefect API server (SQLite in the session's state folder); stopped with all it started."""
    stack.start_server(SETTINGS)
    yield SETTINGS.api_url
    stack.flush_prefect_clients()
    stack.stop_all(SETTINGS)


@pytest.fixture(scope="session")
def stores(prefect_server: str) -> ConveyorStores:
    """The registered stores block; its folders live in the session's state folder."""
    stack.ensure_stores_block(SETTINGS)
    return ConveyorStores.resolve()


@pytest.fixture(scope="session")
def landed_partition(stores: ConveyorStores) -> Path:
    """A clean day of telemetry in the landing folder."""
    return write_partition(generate_telemetry(TRAINING_ROWS, SESSION_DAY), stores.landing_path, SESSION_DAY)


@pytest.fixture(scope="session")
def snapshot(landed_partition: Path, stores: ConveyorStores) -> Snapshot:
    """The content-addressed snapshot of the session's partition."""
    return snapshot_partition(landed_partition, stores.data_path)


@pytest.fixture(scope="session")
def trained(snapshot: Snapshot, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    """A model trained once on the session's snapshot."""
    return train_model(snapshot, FAST_TRAINING, tmp_path_factory.mktemp("trained"))


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the installed `conveyor` command as a user would, in this session's environment."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "conveyor"), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_event(name: str, resource_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """The first event of that name about that resource, as the server's event store returns it."""
    deadline = time.monotonic() + timeout_s
    body = {"filter": {"event": {"name": [name]}, "resource": {"id": [resource_id]}}, "limit": 1}
    while time.monotonic() < deadline:
        stack.flush_prefect_clients()
        found = httpx.post(f"{SETTINGS.api_url}/events/filter", json=body, timeout=10).json()["events"]
        if found:
            return dict(found[0])
        time.sleep(0.5)
    raise AssertionError(f"no {name} event about {resource_id} within {timeout_s:.0f} s")


def quiesce_stack() -> None:
    """Cancel every unfinished run that is due (freeing deployment concurrency slots), then stop workers and watcher.

    Runs scheduled for later (the nightly cron) are left alone.
    """
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled

    unfinished = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED, StateType.CANCELLING]
    now = dt.datetime.now(dt.UTC)
    with get_client(sync_client=True) as client:
        for run in client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished)))
        ):
            if run.state_type == StateType.SCHEDULED and run.expected_start_time and run.expected_start_time > now:
                continue
            client.set_flow_run_state(run.id, Cancelled(message="The test module that started it ended."), force=True)
    stack.stop_all(SETTINGS, keep_server=True)
