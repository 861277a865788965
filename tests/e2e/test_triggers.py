"""Work starts itself: landed data triggers validate, passed validation triggers one (debounced) refit, cron
schedules refits, and work sent to the gpu pool waits for a gpu worker. Real server, watcher and workers."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import FlowRun, StateType

from conveyor.blocks import ConveyorStores
from conveyor.data.synthetic import generate_telemetry, write_partition
from conveyor.io.files import sha256_file
from conveyor.registry.aliases import read_audit
from conveyor.registry.store import list_versions
from conveyor.settings import ConveyorSettings
from conveyor.stack import local as stack
from tests.fixtures.cli import run_cli
from tests.fixtures.data import TRAINING_ROWS
from tests.fixtures.server import SETTINGS, quiesce_stack

pytestmark = pytest.mark.slow
BURST = 10
QUICK_TRAINING = {"epochs": 3}


@pytest.fixture(scope="module")
def live_stack(stores: ConveyorStores) -> Iterator[dict[str, Any]]:
    """`conveyor up`: pools, deployments with their triggers, a cpu worker and the landing watcher."""
    result = run_cli("up", "--json")
    assert result.returncode == 0, result.stderr
    assert stack.watcher_pid(SETTINGS) is not None
    yield json.loads(result.stdout)
    quiesce_stack()  # later modules run without workers reacting to their events


def reset_debounce() -> None:
    """Re-deploying recreates the deployments' automations, so the refit trigger's debounce window starts afresh."""
    stack.deploy_all(SETTINGS)


def runs_of(deployment: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def wait_for(what: str, found: Callable[[], list[FlowRun]], count: int = 1, timeout_s: float = 240) -> list[FlowRun]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(runs := found()) >= count:
            return runs
        time.sleep(1)
    raise AssertionError(f"{what}: fewer than {count} within {timeout_s:.0f} s")


def land(stores: ConveyorStores, day: dt.date, rows: int = TRAINING_ROWS) -> Path:
    return write_partition(generate_telemetry(rows, day, seed=day.toordinal()), stores.landing_path, day)


def finished(runs: list[FlowRun]) -> list[FlowRun]:
    return [r for r in runs if r.state and r.state.is_final()]


def test_a_landed_partition_starts_validate_then_refit_on_its_hash(
    live_stack: dict[str, Any], stores: ConveyorStores
) -> None:
    reset_debounce()
    partition = land(stores, dt.date(2026, 3, 1))
    digest = sha256_file(partition)

    validated = wait_for(
        "validate runs of the partition",
        lambda: finished([r for r in runs_of("validate/default") if r.parameters.get("partition") == str(partition)]),
    )
    assert [r.state_type for r in validated] == [StateType.COMPLETED]
    refits = wait_for(
        "refit runs of its snapshot",
        lambda: finished([r for r in runs_of("refit/default") if r.parameters.get("snapshot") == digest]),
        timeout_s=420,
    )
    assert [r.state_type for r in refits] == [StateType.COMPLETED]
    assert refits[0].start_time and validated[0].end_time and refits[0].start_time >= validated[0].end_time
    made = [v for v in list_versions(stores.model_path) if v.flow_run_id == str(refits[0].id)]
    assert [v.data_sha256 for v in made] == [digest]
    # Its conveyor.model.registered event starts the gate, which moves staging to it (no production yet: floors).
    (version,) = made
    gated = wait_for(
        "the promote run of its version",
        lambda: finished(
            [r for r in runs_of("promote/default") if str(r.parameters.get("version")) == str(version.version)]
        ),
        timeout_s=300,
    )
    assert [r.state_type for r in gated] == [StateType.COMPLETED], gated[0].state
    staged = [m for m in read_audit(stores.model_path, version.name) if m.alias == "staging"]
    assert (staged[-1].to_version, staged[-1].via) == (version.version, "promote")


def test_ten_partitions_at_once_start_ten_validations_and_one_refit(
    live_stack: dict[str, Any], stores: ConveyorStores
) -> None:
    reset_debounce()
    # Small and dated before the session's partitions, so "the newest partition" stays a full-size one.
    burst = [land(stores, dt.date(2025, 11, 1) + dt.timedelta(days=i), rows=3_000) for i in range(BURST)]
    digests = {sha256_file(p) for p in burst}
    paths = {str(p) for p in burst}

    validated = wait_for(
        "validate runs of the burst",
        lambda: finished([r for r in runs_of("validate/default") if r.parameters.get("partition") in paths]),
        count=BURST,
        timeout_s=400,
    )
    assert {r.state_type for r in validated} == {StateType.COMPLETED}
    assert len(validated) == BURST  # one validation per partition, none announced twice

    def burst_refits() -> list[FlowRun]:
        return [r for r in runs_of("refit/default") if r.parameters.get("snapshot") in digests]

    wait_for("a refit of the burst", burst_refits)
    time.sleep(15)  # every validation.passed has reached the trigger by now (the server acts within about 1 s)
    assert len(burst_refits()) == 1


def test_refit_has_a_nightly_utc_cron_that_the_server_schedules(live_stack: dict[str, Any]) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("refit/default")
    assert deployment.global_concurrency_limit and deployment.global_concurrency_limit.limit == 1
    assert deployment.concurrency_options and deployment.concurrency_options.collision_strategy == "ENQUEUE"
    [schedule] = deployment.schedules
    assert schedule.active
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 2 * * *", "UTC")  # type: ignore[union-attr]

    scheduled = wait_for(
        "runs the scheduler made",
        lambda: [r for r in runs_of("refit/default") if r.state_type == StateType.SCHEDULED and r.auto_scheduled],
        timeout_s=150,
    )
    now = dt.datetime.now(dt.UTC)
    starts = sorted(r.expected_start_time for r in scheduled if r.expected_start_time)
    assert starts[0] > now
    assert all((s.hour, s.minute) == (2, 0) for s in (t.astimezone(dt.UTC) for t in starts))


def test_two_refits_asked_for_at_once_run_one_after_the_other(
    live_stack: dict[str, Any], landed_partition: Path
) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("refit/default")
        made = [
            client.create_flow_run_from_deployment(
                deployment.id, parameters={"partition": landed_partition.name, "training": QUICK_TRAINING}
            ).id
            for _ in range(2)
        ]
    done = wait_for(
        "both refits finished", lambda: finished([r for r in runs_of("refit/default") if r.id in made]), count=2,
        timeout_s=420,
    )  # fmt: skip
    assert {r.state_type for r in done} == {StateType.COMPLETED}
    first, second = sorted(done, key=lambda r: r.start_time or dt.datetime.max.replace(tzinfo=dt.UTC))
    assert first.end_time and second.start_time and second.start_time >= first.end_time


def test_a_run_sent_to_the_gpu_pool_waits_for_a_gpu_worker(
    live_stack: dict[str, Any], landed_partition: Path, settings: ConveyorSettings
) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("refit/gpu")
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"partition": landed_partition.name, "training": QUICK_TRAINING}
        )
    assert deployment.work_pool_name == "gpu"
    time.sleep(4 * settings.stack.worker_poll_seconds)  # the live cpu worker polls several times meanwhile
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(run.id).state_type == StateType.SCHEDULED

    gpu_worker = subprocess.run(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "gpu", "--name", "test-gpu", "--run-once"],
        capture_output=True, text=True, timeout=400, check=False, cwd=settings.project_dir,
    )  # fmt: skip
    assert gpu_worker.returncode == 0, gpu_worker.stdout[-2000:] + gpu_worker.stderr[-2000:]
    with get_client(sync_client=True) as client:
        done = client.read_flow_run(run.id)
    assert done.state_type == StateType.COMPLETED
    assert str(run.id) in gpu_worker.stdout + gpu_worker.stderr


def test_every_deployment_has_a_typed_described_form_a_description_tags_a_pool_and_job_variables(
    live_stack: dict[str, Any],
) -> None:
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
    assert {d.name for d in deployments} >= {"default", "gpu"}
    for deployment in deployments:
        assert deployment.description and deployment.tags and deployment.work_pool_name in {"cpu", "gpu", "edge"}
        assert deployment.job_variables and deployment.job_variables["env"]["OMP_NUM_THREADS"]
        properties = (deployment.parameter_openapi_schema or {}).get("properties", {})
        assert properties
        for name, field in properties.items():
            assert {"type", "anyOf", "allOf", "$ref"} & set(field), f"{deployment.name}: {name} has no type"
            assert field.get("description"), f"{deployment.name}: {name} has no description for the form"
