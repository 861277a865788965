"""From the command line to a registered model: deployments from prefect.yaml, run by a real process worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.blocks import ConveyorStores
from conveyor.registry.store import list_versions
from conveyor.settings import ConveyorSettings
from conveyor.stack import local as stack
from tests.fixtures.cli import run_cli
from tests.fixtures.server import SETTINGS, quiesce_stack

pytestmark = pytest.mark.slow
QUICK = '{"epochs": 3}'


@pytest.fixture(scope="module")
def stack_up(stores: ConveyorStores, landed_partition: Path) -> Iterator[dict[str, object]]:
    """`conveyor up` against the session's server: pools, block, deployments, a cpu worker and the watcher."""
    result = run_cli("up", "--json")
    assert result.returncode == 0, result.stderr
    yield json.loads(result.stdout)
    quiesce_stack()  # later modules run without workers reacting to their events


def test_up_is_idempotent(stack_up: dict[str, object]) -> None:
    again = run_cli("up", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"api_url": None} == {
        **stack_up,
        "api_url": None,
        "server_started": False,
        "work_pools_created": [],
        "stores_block_created": False,
        "key_blocks_created": [],
        "workers_started": [],
        "watcher_started": False,
    }


def test_prefect_deployment_run_completes_on_a_process_worker(
    stack_up: dict[str, object], stores: ConveyorStores, landed_partition: Path, settings: ConveyorSettings
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "prefect", "deployment", "run", "refit/default",
         "--param", f"partition={landed_partition.name}", "--param", f"training={QUICK}", "--watch"],
        capture_output=True, text=True, timeout=300, check=False, cwd=settings.project_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout)
    assert run_id
    made = [v for v in list_versions(stores.model_path) if v.flow_run_id == run_id.group(1)]
    assert len(made) == 1
    assert made[0].metrics["roc_auc"] >= 0.8
    assert Path(made[0].onnx_path).is_file()


def test_conveyor_run_prints_state_version_metrics_onnx_and_ui(stack_up: dict[str, object]) -> None:
    result = run_cli("run", "refit/default", "-p", f"training={QUICK}")
    assert result.returncode == 0, result.stderr
    for label in ("flow run", "COMPLETED", "model", "metrics", "roc_auc", "ONNX", "model.onnx", "UI"):
        assert label in result.stdout


def test_status_shows_the_live_cpu_worker_and_the_deployment(
    stack_up: dict[str, object], stores: ConveyorStores
) -> None:
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["server_healthy"] is True
    assert set(status["work_pools"]) >= {"cpu", "gpu", "edge"}
    assert any(w["status"] == "ONLINE" for w in status["work_pools"]["cpu"]["workers"])
    assert "refit/default" in status["deployments"]
    assert status["landing"]["partitions"] >= 1
    assert status["landing"]["path"] == stores.landing_dir
    assert status["watcher"]["pid"] is not None
    assert {"name": "conveyor-cpu", "pool": "cpu"}.items() <= next(
        w for w in status["workers"] if w["name"] == "conveyor-cpu"
    ).items()


def _gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for a parent that does not reap counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def test_down_stops_the_watcher_and_up_brings_it_back(stack_up: dict[str, object]) -> None:
    watcher = stack.watcher_pid(SETTINGS)
    assert watcher is not None
    # Runs the watcher's events started may still be going: cancel them first, or a killed refit keeps its
    # concurrency slot until the slot's lease expires, and the next refit waits for it.
    quiesce_stack()
    assert stack.watcher_pid(SETTINGS) is None
    assert _gone(watcher)
    again = run_cli("up", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["watcher_started"] is True


def test_failed_run_exits_non_zero_with_the_reason(stack_up: dict[str, object]) -> None:
    result = run_cli("run", "refit/default", "-p", "day=2020-01-01", timeout=300)
    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert "No landed partition at" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_unknown_deployment_is_one_clear_sentence(stack_up: dict[str, object]) -> None:
    result = run_cli("run", "nope/missing")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: No deployment is named 'nope/missing'; deployed: "
        "edge-check/default, promote/default, refit/default, refit/gpu, tune/default, validate/default."
    )
