"""From the command line to a registered model: deployments from prefect.yaml, run by a real process worker."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from blocks.settings import ConveyorSettings
from blocks.stores import ConveyorStores
from tasks.registry import list_versions
from tests.conftest import run_cli

pytestmark = pytest.mark.slow
QUICK = '{"epochs": 3}'


@pytest.fixture(scope="module")
def stack_up(stores: ConveyorStores, landed_partition: Path) -> dict[str, object]:
    """`conveyor up` against the session's server: pools, block, deployments and a cpu worker."""
    result = run_cli("up", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_up_is_idempotent(stack_up: dict[str, object]) -> None:
    again = run_cli("up", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) | {"api_url": None} == {
        **stack_up,
        "api_url": None,
        "server_started": False,
        "work_pools_created": [],
        "stores_block_created": False,
        "workers_started": [],
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


def test_status_shows_the_live_cpu_worker_and_the_deployment(stack_up: dict[str, object]) -> None:
    result = run_cli("status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["server_healthy"] is True
    assert set(status["work_pools"]) >= {"cpu", "gpu", "edge"}
    assert any(w["status"] == "ONLINE" for w in status["work_pools"]["cpu"]["workers"])
    assert "refit/default" in status["deployments"]
    assert status["landing"]["partitions"] >= 1


def test_failed_run_exits_non_zero_with_the_reason(stack_up: dict[str, object]) -> None:
    result = run_cli("run", "refit/default", "-p", "day=2020-01-01")
    assert result.returncode == 1
    assert "FAILED" in result.stdout
    assert "No landed partition at" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_unknown_deployment_is_one_clear_sentence(stack_up: dict[str, object]) -> None:
    result = run_cli("run", "nope/missing")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: No deployment is named 'nope/missing'; deployed: edge-check/default, refit/default, validate/default."
    )
