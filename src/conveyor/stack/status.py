"""What the stack looks like now, and the outcome of deployment runs, for people and for --json."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from prefect import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from pydantic import ValidationError

from conveyor.blocks import ConveyorStores
from conveyor.data.landing import WatcherState
from conveyor.data.snapshots import landed_partitions
from conveyor.registry.storage import ModelStore
from conveyor.registry.store import RegisteredVersion, list_versions
from conveyor.schema.catalog import find_spec
from conveyor.settings import ConveyorSettings
from conveyor.stack.errors import UnknownDeploymentError
from conveyor.stack.local import WORK_POOLS, server_healthy, watcher_pid


def _deployment_names() -> list[str]:
    with get_client(sync_client=True) as client:
        flows = {f.id: f.name for f in client.read_flows()}
        return sorted(f"{flows.get(d.flow_id, '?')}/{d.name}" for d in client.read_deployments())


def describe_status(settings: ConveyorSettings) -> dict[str, Any]:
    """Server health, pools and workers (each with its pool), deployments, landing folder and watcher, model store."""
    healthy = server_healthy(settings.api_url)
    report: dict[str, Any] = {"api_url": settings.api_url, "ui_url": settings.ui_url, "server_healthy": healthy}
    stores = ConveyorStores.resolve() if healthy else ConveyorStores.from_settings(settings)
    landed = landed_partitions(stores.landing_path, find_spec())
    versions = list_versions(ModelStore.of(stores))
    report["landing"] = {
        "path": stores.landing_dir,
        "partitions": len(landed),
        "newest": landed[-1].name if landed else None,
    }
    report["watcher"] = {
        "pid": watcher_pid(settings),
        "watching": settings.watcher.watch_url or stores.landing_dir,
        "announced": len(WatcherState.load(settings.watcher_state_file).announced),
        "state_file": str(settings.watcher_state_file),
    }
    report["model_store"] = {
        "path": stores.model_store,
        "versions": len(versions),
        "latest": f"{versions[-1].name} v{versions[-1].version}" if versions else None,
    }
    if not healthy:
        return report
    with get_client(sync_client=True) as client:
        pools: dict[str, dict[str, Any]] = {}
        for pool in client.read_work_pools():
            workers = client.read_workers_for_work_pool(pool.name)
            pools[pool.name] = {
                "type": pool.type,
                "workers": [
                    {
                        "name": w.name,
                        "status": str(w.status.value if w.status else "UNKNOWN"),
                        "last_heartbeat": w.last_heartbeat_time,
                    }
                    for w in workers
                ],
            }
    report["work_pools"] = pools
    report["workers"] = [{"pool": name, **worker} for name, pool in pools.items() for worker in pool["workers"]]
    report["missing_work_pools"] = [p for p in WORK_POOLS if p not in pools]
    report["deployments"] = _deployment_names()
    return report


def status_text(report: dict[str, Any]) -> str:
    """The status report as a few lines a person reads at a glance."""
    health = "healthy" if report["server_healthy"] else "NOT REACHABLE (run `conveyor up`)"
    lines = [f"Prefect API  {report['api_url']}  {health}"]
    for name, pool in report.get("work_pools", {}).items():
        live = [w["name"] for w in pool["workers"] if w["status"] == "ONLINE"]
        lines.append(f"pool {name:<5} {pool['type']:<8} online workers: {', '.join(live) or 'none'}")
    if report.get("deployments") is not None:
        lines.append(f"deployments  {', '.join(report['deployments']) or 'none'}")
    landing, store = report["landing"], report["model_store"]
    lines.append(f"landing      {landing['path']}  ({landing['partitions']} partitions, newest {landing['newest']})")
    watcher = report["watcher"]
    state = f"pid {watcher['pid']}" if watcher["pid"] else "NOT RUNNING (run `conveyor up`)"
    lines.append(f"watcher      {state}, watching {watcher['watching']} ({watcher['announced']} announced)")
    lines.append(f"model store  {store['path']}  ({store['versions']} versions, latest {store['latest']})")
    lines.append(f"UI           {report['ui_url']}")
    return "\n".join(lines)


def start_deployment_run(name: str, parameters: dict[str, Any]) -> FlowRun:
    """Create a run of a deployment by FLOW/DEPLOYMENT name; its worker picks it up (follow it with follow_run)."""
    if "/" not in name:
        raise UnknownDeploymentError(f"Deployment names look like FLOW/DEPLOYMENT (e.g. refit/default); got {name!r}.")
    try:
        with get_client(sync_client=True) as client:
            client.read_deployment_by_name(name)
    except ObjectNotFound:
        known = ", ".join(_deployment_names()) or "none (run `conveyor up`)"
        raise UnknownDeploymentError(f"No deployment is named {name!r}; deployed: {known}.") from None
    flow_run = run_deployment(name, parameters=parameters, timeout=0)
    assert isinstance(flow_run, FlowRun)
    return flow_run


def describe_run(settings: ConveyorSettings, flow_run: FlowRun) -> dict[str, Any]:
    """State of a finished run and, when it registered one, the model version it made."""
    state = flow_run.state
    outcome: dict[str, Any] = {
        "flow_run_id": str(flow_run.id),
        "flow_run_name": flow_run.name,
        "state": state.type.value if state else "UNKNOWN",
        "message": state.message if state else None,
        "url": f"{settings.ui_url}/runs/flow-run/{flow_run.id}",
        "model": None,
    }
    # Refit's result is the version it made or reused, stored as JSON: it comes back as a dict.
    # Flows that keep no result (state.data is None) have nothing to report here.
    result = state.result(raise_on_failure=False) if state and state.is_completed() and state.data else None
    if isinstance(result, dict | RegisteredVersion):
        with suppress(ValidationError):
            outcome["model"] = RegisteredVersion.model_validate(result).model_dump()
    return outcome


def run_text(outcome: dict[str, Any]) -> str:
    """A run's outcome as the lines `make demo` ends with."""
    lines = [f"flow run     {outcome['flow_run_name']}: {outcome['state']}"]
    if outcome["state"] != "COMPLETED" and outcome["message"]:
        lines.append(f"reason       {outcome['message']}")
    if model := outcome["model"]:
        metrics = model["metrics"]
        lines += [
            f"model        {model['name']} v{model['version']} (data {model['data_sha256'][:12]})",
            "metrics      "
            + ", ".join(f"{k} {metrics[k]:.3f}" for k in ("roc_auc", "pr_auc", "log_loss", "calibration_error")),
            f"ONNX         {model['onnx_path']}",
        ]
    lines.append(f"UI           {outcome['url']}")
    return "\n".join(lines)
