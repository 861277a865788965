"""Partition landed -> refit running: p50 latency through watcher, triggers and workers, and the idle stack's CPU.

A private stack (its own server on a free port, state in a temporary folder) runs the real chain: the landing
watcher announces the file, the trigger starts validate, validation passed starts refit. Two worker polling
settings are measured side by side in one run: Prefect's default (PREFECT_WORKER_QUERY_SECONDS=10, the baseline)
and Conveyor's tuned one (--poll, default 1 s). Every trial re-deploys first so the refit trigger's 300 s
debounce window starts afresh, and cancels the refit once it runs. Afterwards the idle server, worker and watcher
are sampled for CPU time.
Run: .venv/bin/python -m benchmarks.bench_trigger_latency [--trials 10] [--poll 1] [--idle-seconds 30]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

PREFECT_DEFAULT_POLL_S = 10
PARTITION_ROWS = 2_000
_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# A private installation, set before prefect is imported (as tests/conftest.py does).
_STATE = Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
for _name in [n for n in os.environ if n.startswith("CONVEYOR_")]:
    del os.environ[_name]
os.environ.update({"CONVEYOR_STATE_DIR": str(_STATE), "CONVEYOR_SERVER_PORT": str(_free_port())})

from conveyor.settings import ConveyorSettings, configure_prefect_env  # noqa: E402

SETTINGS = configure_prefect_env()

from prefect import get_client  # noqa: E402
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId  # noqa: E402
from prefect.client.schemas.objects import FlowRun  # noqa: E402
from prefect.states import Cancelling  # noqa: E402

from conveyor.blocks import ConveyorStores  # noqa: E402
from conveyor.data.synthetic import generate_telemetry, write_partition  # noqa: E402
from conveyor.io.files import sha256_file  # noqa: E402
from conveyor.stack import local as stack  # noqa: E402


def _runs(deployment: str) -> list[FlowRun]:
    with get_client(sync_client=True) as client:
        deployment_id = client.read_deployment_by_name(deployment).id
        return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def _wait_for_run(deployment: str, key: str, value: str, timeout_s: float = 300) -> FlowRun:
    """The run of a deployment with that parameter, once it has started."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for run in _runs(deployment):
            if run.parameters.get(key) == value and run.start_time:
                return run
        time.sleep(0.25)
    raise TimeoutError(f"no {deployment} run with {key}={value[:16]} started within {timeout_s:.0f} s")


def _cancel(run: FlowRun) -> None:
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Cancelling(message="Benchmark trial over."), force=True)


def trial(stores: ConveyorStores, day: dt.date) -> dict[str, float]:
    """Land one partition; seconds from the rename until validate and then refit are running."""
    stack.deploy_all(SETTINGS)  # a fresh refit trigger, so its debounce window does not swallow this trial
    frame = generate_telemetry(PARTITION_ROWS, day, seed=day.toordinal())
    landed_at = time.time()
    path = write_partition(frame, stores.landing_path, day)
    validate = _wait_for_run("validate/default", "partition", str(path))
    refit = _wait_for_run("refit/default", "snapshot", sha256_file(path))
    _cancel(refit)
    assert validate.start_time and refit.start_time
    return {
        "to_validate_s": validate.start_time.timestamp() - landed_at,
        "to_refit_s": refit.start_time.timestamp() - landed_at,
    }


def _group(root: int) -> dict[int, float]:
    """CPU seconds (user + system, reaped children included) of every process in root's process group."""
    members = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == root:  # field 5 of /proc/pid/stat: the process group
            members[int(stat.parent.name)] = sum(int(f) for f in fields[11:15]) / _TICKS
    return members


def idle_cpu(settings: ConveyorSettings, seconds: float) -> dict[str, float]:
    """Share of one core each process started by `conveyor up` uses while nothing happens.

    Waits (up to 120 s) until no flow-run process is left in any group, so a run winding down is not counted.
    """
    pids = {path.stem: int(path.read_text()) for path in settings.pid_dir.glob("*.pid")}
    groups = {name: len(_group(pid)) for name, pid in pids.items()}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(len(_group(pid)) > groups[n] for n, pid in pids.items()):
        time.sleep(1)
    while time.monotonic() < deadline and len(_group(pids.get("worker-cpu", 0))) > 1:
        time.sleep(1)
    before = {name: _group(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    after = {name: _group(pid) for name, pid in pids.items()}
    return {
        name: 100 * sum(cpu - before[name].get(member, 0.0) for member, cpu in after[name].items()) / seconds
        for name in pids
    }


def measure(
    settings: ConveyorSettings, stores: ConveyorStores, trials: int, first_day: dt.date
) -> list[dict[str, float]]:
    """Restart workers and watcher with these settings, then run the trials."""
    stack.stop_all(settings, keep_server=True)
    stack.start_workers(settings)
    stack.start_watcher(settings)
    time.sleep(5)  # the worker registers with its pool
    return [trial(stores, first_day + dt.timedelta(days=i)) for i in range(trials)]


def _p50(samples: list[dict[str, float]], key: str) -> float:
    return statistics.median(s[key] for s in samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--poll", type=int, default=1, help="Tuned worker polling interval, seconds.")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()

    tuned = SETTINGS.model_copy(update={"stack": SETTINGS.stack.model_copy(update={"worker_poll_seconds": args.poll})})
    baseline = SETTINGS.model_copy(
        update={"stack": SETTINGS.stack.model_copy(update={"worker_poll_seconds": PREFECT_DEFAULT_POLL_S})}
    )
    try:
        stack.start_server(SETTINGS)
        stack.ensure_work_pools()
        stack.ensure_stores_block(SETTINGS)
        stores = ConveyorStores.resolve()
        results = {
            "baseline": measure(baseline, stores, args.trials, dt.date(2027, 1, 1)),
            "tuned": measure(tuned, stores, args.trials, dt.date(2028, 1, 1)),
        }
        idle = idle_cpu(tuned, args.idle_seconds)
    finally:
        stack.flush_prefect_clients()
        stack.stop_all(SETTINGS)

    if args.trials:
        report_latency(results, baseline, tuned, args.trials)
    print(f"idle CPU over {args.idle_seconds:g} s, % of one core: "
          + ", ".join(f"{name} {share:.1f}" for name, share in sorted(idle.items()))
          + f", total {sum(idle.values()):.1f}")  # fmt: skip
    out = Path(__file__).parent / "results" / "trigger_latency.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"trials": results, "idle_cpu_percent": idle}, indent=2))


def report_latency(
    results: dict[str, list[dict[str, Any]]], baseline: ConveyorSettings, tuned: ConveyorSettings, trials: int
) -> None:
    """Print the p50 latencies of both polling settings and their ratio."""
    print(f"partition landed -> run started, p50 over {trials} trials (watcher polls every "
          f"{SETTINGS.watcher.watch_poll_seconds:g} s)")  # fmt: skip
    for name, settings in (("baseline", baseline), ("tuned", tuned)):
        samples = results[name]
        print(f"  {name:<8} worker polls every {settings.stack.worker_poll_seconds:>2} s: "
              f"validate {_p50(samples, 'to_validate_s'):5.1f} s, refit {_p50(samples, 'to_refit_s'):5.1f} s "
              f"(max {max(s['to_refit_s'] for s in samples):5.1f} s)")  # fmt: skip
    ratio = _p50(results["tuned"], "to_refit_s") / _p50(results["baseline"], "to_refit_s")
    print(f"  tuned / baseline refit latency: {ratio:.2f} (goal: tuned p50 <= 10 s)")


if __name__ == "__main__":
    main()
