"""Shared fixtures: one real Prefect server per session, temporary stores, data made once."""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pandas as pd
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

from blocks.stores import ConveyorStores, S3Credentials  # noqa: E402
from deployments import stack  # noqa: E402
from tasks.boosting import BoostingParams  # noqa: E402
from tasks.data import Snapshot, snapshot_partition  # noqa: E402
from tasks.datastore import DataStore  # noqa: E402
from tasks.edge import EdgeBundle, EdgeTarget, build_edge_bundle, check_edge_accuracy, quantize_for_edge  # noqa: E402
from tasks.evaluation import evaluate_model  # noqa: E402
from tasks.export import ParityThresholds, check_onnx_parity, export_onnx  # noqa: E402
from tasks.registry import Candidate, RegisteredVersion, register_model_version, reserve_model_version  # noqa: E402
from tasks.synthetic import LABEL, generate_telemetry, write_partition  # noqa: E402
from tasks.training import TrainedModel, TrainingParams, train_model  # noqa: E402

# Small enough to train in seconds, large enough (200+ machines) for a stable held-out AUC.
TRAINING_ROWS = 20_000
FAST_TRAINING = TrainingParams(epochs=6)
FAST_BOOSTING = BoostingParams(rounds=60)
SESSION_DAY = dt.date(2026, 1, 15)
GATEWAY = EdgeTarget()
CANDIDATE_NAME = "candidate"


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
def data_store(stores: ConveyorStores) -> DataStore:
    """The data store the stores block configures (a folder of the session's state folder)."""
    return DataStore.of(stores)


class ObjectStore(NamedTuple):
    """A real S3 API (moto's server, on loopback) with an empty bucket, and credentials for it."""

    endpoint: str
    bucket: str
    credentials: S3Credentials

    def client(self) -> Any:
        """A boto3 client of the same API: what another tool (or person) sees in the bucket."""
        import boto3

        secret = self.credentials.secret_access_key.get_secret_value()
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=secret, region_name=self.credentials.region_name,
        )  # fmt: skip


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 server in its own process on a free loopback port: the object store cannot exist here otherwise."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"moto's S3 server did not answer on {endpoint}; see {log.name}")
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=30)
    log.close()


@pytest.fixture
def object_store(s3_server: str) -> ObjectStore:
    """A fresh bucket on the S3 server, with credentials whose secret a test can look for in logs."""
    credentials = S3Credentials(
        access_key_id="conveyor-test",
        secret_access_key=f"never-logged-{uuid.uuid4().hex}",
        endpoint_url=s3_server,
        region_name="us-east-1",
    )
    store = ObjectStore(endpoint=s3_server, bucket=f"conveyor-{uuid.uuid4().hex[:12]}", credentials=credentials)
    store.client().create_bucket(Bucket=store.bucket)
    return store


@pytest.fixture(scope="session")
def landed_partition(stores: ConveyorStores) -> Path:
    """A clean day of telemetry in the landing folder."""
    return write_partition(generate_telemetry(TRAINING_ROWS, SESSION_DAY), stores.landing_path, SESSION_DAY)


@pytest.fixture(scope="session")
def snapshot(landed_partition: Path, data_store: DataStore) -> Snapshot:
    """The content-addressed snapshot of the session's partition."""
    return snapshot_partition(landed_partition, data_store)


@pytest.fixture(scope="session")
def trained(snapshot: Snapshot) -> TrainedModel:
    """A model trained once on the session's snapshot."""
    return train_model(snapshot, FAST_TRAINING)


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


class StagedCandidate(NamedTuple):
    """What a refit run has made by the time it registers: the candidate and its edge bundles."""

    candidate: Candidate
    bundles: list[EdgeBundle]


def flow_run_artifacts(flow_run_id: str) -> dict[str, dict[str, Any]]:
    """The keyed artifacts a flow run published, by key, as the server returns them."""
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    found = httpx.post(f"{SETTINGS.api_url}/artifacts/filter", json=body, timeout=10).json()
    return {a["key"]: a for a in found if a.get("key")}


@pytest.fixture(scope="session")
def candidate(trained: TrainedModel, snapshot: Snapshot, landed_partition: Path) -> StagedCandidate:
    """Everything a refit run makes before registering (fp32 model, parity set, gateway bundle), made once."""
    evaluation = evaluate_model(trained, snapshot, FAST_TRAINING.holdout_fraction)
    exported = export_onnx(trained, {"model_name": CANDIDATE_NAME, "data_sha256": snapshot.sha256})
    parity = check_onnx_parity(
        exported, trained, snapshot, FAST_TRAINING.holdout_fraction, ParityThresholds(), landed_partition
    )
    variant = quantize_for_edge(exported, GATEWAY)
    accuracy = check_edge_accuracy(exported, variant, snapshot, FAST_TRAINING.holdout_fraction, GATEWAY)
    bundle = build_edge_bundle(variant, GATEWAY, CANDIDATE_NAME, 1, snapshot.sha256, Path(parity.known_inputs))
    made = Candidate(
        snapshot=snapshot,
        params=FAST_TRAINING,
        model=trained,
        evaluation=evaluation,
        exported=exported,
        parity=parity,
        edge=[(variant, accuracy)],
    )
    return StagedCandidate(made, [bundle])


def register_candidate(staged: StagedCandidate, model_store: Path, name: str, run_id: str) -> RegisteredVersion:
    """Register the session's candidate under a model name, as a refit run would."""
    version = reserve_model_version(model_store, name, staged.candidate, run_id)
    return register_model_version(version, staged.candidate, staged.bundles, run_id)


@pytest.fixture
def recompute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cached results are not reused in this test: every task computes (as CONVEYOR_FORCE_RECOMPUTE=1 does)."""
    monkeypatch.setenv("CONVEYOR_FORCE_RECOMPUTE", "1")


# A corpus of bad batches: each writes its damage to the given path; the test names the check that must catch it.
CORPUS_DAY = dt.date(2026, 3, 3)


def _clean() -> pd.DataFrame:
    return generate_telemetry(480, CORPUS_DAY)


def _parquet(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], object]:
    return lambda path: change(_clean()).to_parquet(path, index=False)


def _set(column: str, value: float | str, rows: slice = slice(0, 3)) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame[column] = frame[column].astype(object) if isinstance(value, str) else frame[column]
        frame.loc[frame.index[rows], column] = value
        return frame

    return change


def _truncated(path: Path) -> None:
    _clean().to_parquet(path, index=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _scrambled(path: Path) -> None:
    _clean().to_parquet(path, index=False)
    data = bytearray(path.read_bytes())
    data[8:-8] = bytes(len(data) - 16)  # keeps the PAR1 magic at both ends, zeroes everything between
    path.write_bytes(bytes(data))


def _out_of_order(frame: pd.DataFrame) -> pd.DataFrame:
    first = frame[frame["machine_id"] == frame["machine_id"].iloc[0]].index
    frame.loc[first[:2], "timestamp"] = frame.loc[first[:2], "timestamp"].to_numpy()[::-1]
    return frame


def _idle_but_vibrating(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[frame.index[:2], "rpm"] = 0.0
    frame.loc[frame.index[:2], "vibration"] = 3.0
    return frame


# name: (write the bad batch, what the report must name: a check (substring), or None for an unreadable file)
BAD_BATCHES: dict[str, tuple[Callable[[Path], object], str | None]] = {
    "empty table": (lambda p: pd.DataFrame().to_parquet(p), "has_rows"),
    "zero rows": (_parquet(lambda f: f.head(0)), "has_rows"),
    "zero-byte file": (lambda p: p.write_bytes(b""), None),
    "truncated parquet": (_truncated, None),
    "corrupt parquet": (_scrambled, None),
    "CSV renamed .parquet": (lambda p: _clean().to_csv(p, index=False), None),
    "missing column": (_parquet(lambda f: f.drop(columns="voltage")), "column_in_dataframe on voltage"),
    "extra column": (_parquet(lambda f: f.assign(operator="alice")), "column_in_schema on operator"),
    "wrong dtype": (_parquet(lambda f: f.astype({"age_days": "float64"})), "dtype('int64') on age_days"),
    "all-null column": (_parquet(lambda f: f.assign(pressure=float("nan"))), "not_nullable on pressure"),
    "NaN in a sensor": (_parquet(_set("vibration", float("nan"))), "not_nullable on vibration"),
    "+inf in a sensor": (_parquet(_set("temperature", float("inf"))), "less_than_or_equal_to(150) on temperature"),
    "-inf in a sensor": (_parquet(_set("pressure", float("-inf"))), "greater_than_or_equal_to(0) on pressure"),
    "negative rpm": (_parquet(_set("rpm", -5.0)), "greater_than_or_equal_to(0) on rpm"),
    "timestamps in the future": (
        lambda p: generate_telemetry(480, dt.date(2099, 1, 1)).to_parquet(p, index=False),
        "not_in_the_future on timestamp",
    ),
    "unparsable timestamps": (
        _parquet(lambda f: f.assign(timestamp=f["timestamp"].astype(str).str.replace("-", "/") + "Z?")),
        "on timestamp",
    ),
    "timestamps out of order": (_parquet(_out_of_order), "timestamps_increase_per_machine"),
    "duplicated keys": (_parquet(lambda f: pd.concat([f, f.head(4)])), "multiple_fields_uniqueness"),
    "unknown machine model": (_parquet(_set("machine_model", "ZX-999")), "isin"),
    "label outside {0, 1}": (_parquet(_set(LABEL, 2)), "isin([0, 1]) on failure_within_7d"),
    "control characters": (_parquet(_set("machine_id", "M-00001\x1b[2J")), "no_control_characters on machine_id"),
    "idle machine vibrating": (_parquet(_idle_but_vibrating), "idle_vibration_at_most"),
    "very wide row": (
        _parquet(
            lambda f: pd.concat([f, pd.DataFrame(1.0, index=f.index, columns=[f"x{i}" for i in range(2000)])], axis=1)
        ),
        "column_in_schema on x1999",
    ),
}


@pytest.fixture(params=sorted(BAD_BATCHES))
def bad_batch(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path, str | None]:
    """One bad batch of the corpus, written under tmp_path: its name, its file and the check that must catch it."""
    write, expected = BAD_BATCHES[request.param]
    path = tmp_path / f"telemetry-bad-{re.sub(r'[^a-z0-9]+', '-', request.param.lower()).strip('-')}.parquet"
    write(path)
    return request.param, path, expected


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
