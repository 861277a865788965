"""The local Conveyor stack: a Prefect server, work pools, blocks, deployments and workers, with pid files."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import httpx
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.events.worker import EventsWorker
from prefect.exceptions import ObjectNotFound
from prefect.logging.handlers import APILogWorker

from conveyor.blocks import (
    CACHE_KEY_BLOCK,
    DEFAULT_BLOCK_NAME,
    EDGE_SIGNING_KEY_BLOCK,
    ConveyorStores,
    ensure_secret_key,
)
from conveyor.io.signing import public_key_of
from conveyor.settings import ConveyorSettings
from conveyor.stack.errors import StackError

WORK_POOLS = ("cpu", "gpu", "edge")
DEPLOYMENTS_FILE = Path("deployments") / "prefect.yaml"
_SERVER = "server"
WATCHER = "watcher"
WATCHER_MODULE = "conveyor.flows.watch"
# What a live process we started has in its command line (a pid file can outlive its process, and pids get reused).
_OUR_COMMANDS = (b"prefect", WATCHER_MODULE.encode())
_STOP_GRACE_S = 15.0


def _prefect(*args: str) -> list[str]:
    """The prefect command line of the running interpreter's environment."""
    return [sys.executable, "-m", "prefect", *args]


def _env(settings: ConveyorSettings, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **settings.prefect_env(), **(extra or {})}


def _pid_file(settings: ConveyorSettings, name: str) -> Path:
    return settings.pid_dir / f"{name}.pid"


def _running_pid(settings: ConveyorSettings, name: str) -> int | None:
    """The pid in a pid file if that process is alive and still a Prefect process (or the watcher) we started."""
    path = _pid_file(settings, name)
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if any(marker in cmdline for marker in _OUR_COMMANDS) else None


def _spawn(settings: ConveyorSettings, name: str, command: list[str], extra_env: dict[str, str] | None = None) -> int:
    """Start a long-lived process in its own session, logging to the log folder, and record its pid."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.pid_dir.mkdir(parents=True, exist_ok=True)
    with (settings.log_dir / f"{name}.log").open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=settings.project_dir,
            env=_env(settings, extra_env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _pid_file(settings, name).write_text(f"{process.pid}\n")
    return process.pid


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


def server_healthy(api_url: str) -> bool:
    """Whether a Prefect API answers its health check."""
    try:
        return httpx.get(f"{api_url}/health", timeout=2.0).json() is True
    except (httpx.HTTPError, ValueError):
        return False


def start_server(settings: ConveyorSettings) -> bool:
    """Start the local Prefect server unless ours already runs; True when it was started now."""
    if settings.stack.prefect_api_url:
        if server_healthy(settings.api_url):
            return False  # a shared server someone else runs
        raise StackError(f"The Prefect API at {settings.api_url} (CONVEYOR_PREFECT_API_URL) does not answer.")
    if _running_pid(settings, _SERVER) and server_healthy(settings.api_url):
        return False
    if port_in_use(settings.stack.server_host, settings.stack.server_port):
        raise StackError(
            f"Port {settings.stack.server_port} on {settings.stack.server_host} is already in use by another program; "
            f"stop it or choose another port with CONVEYOR_SERVER_PORT."
        )
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    pid = _spawn(
        settings,
        _SERVER,
        _prefect("server", "start", "--host", settings.stack.server_host, "--port", str(settings.stack.server_port)),
        settings.server_env(),
    )
    deadline = time.monotonic() + settings.stack.startup_timeout_s
    while time.monotonic() < deadline:
        if server_healthy(settings.api_url):
            return True
        if _running_pid(settings, _SERVER) != pid:
            break
        time.sleep(0.5)
    raise StackError(
        f"The Prefect server did not become healthy within {settings.stack.startup_timeout_s:.0f} s; "
        f"see {settings.log_dir / (_SERVER + '.log')}."
    )


def ensure_work_pools(pools: tuple[str, ...] = WORK_POOLS) -> list[str]:
    """Create the process work pools that are missing; returns the ones created."""
    created = []
    with get_client(sync_client=True) as client:
        for name in pools:
            try:
                client.read_work_pool(name)
            except ObjectNotFound:
                client.create_work_pool(
                    WorkPoolCreate(name=name, type="process", description=f"Conveyor's {name} hardware.")
                )
                created.append(name)
    return created


def ensure_stores_block(settings: ConveyorSettings) -> bool:
    """Register the stores block from the settings unless one exists (edits made in the UI are kept)."""
    ConveyorStores.register_type_and_schema()
    try:
        ConveyorStores.load(DEFAULT_BLOCK_NAME)
        return False
    except ValueError:
        ConveyorStores.from_settings(settings).save(DEFAULT_BLOCK_NAME)
        return True


def ensure_key_blocks() -> tuple[list[str], str]:
    """Make the Secret blocks of Conveyor's keys that are missing; returns those made and the edge public key."""
    made, keys = [], {}
    for name in (CACHE_KEY_BLOCK, EDGE_SIGNING_KEY_BLOCK):
        keys[name], created = ensure_secret_key(name)
        if created:
            made.append(name)
    return made, public_key_of(keys[EDGE_SIGNING_KEY_BLOCK])


def deploy_all(settings: ConveyorSettings) -> None:
    """Apply every deployment in deployments/prefect.yaml."""
    result = subprocess.run(
        _prefect("--no-prompt", "deploy", "--all", "--prefect-file", str(DEPLOYMENTS_FILE)),
        cwd=settings.project_dir,
        env=_env(settings),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-3:]
        raise StackError(f"Deploying {DEPLOYMENTS_FILE} failed: {' '.join(tail)}")


def start_workers(settings: ConveyorSettings) -> list[str]:
    """Start one process worker per configured pool unless it already runs; returns the pools started."""
    started = []
    for pool in settings.stack.worker_pools:
        name = f"worker-{pool}"
        if _running_pid(settings, name):
            continue
        _spawn(settings, name, _prefect("worker", "start", "--pool", pool, "--name", f"conveyor-{pool}"))
        started.append(pool)
    return started


def start_watcher(settings: ConveyorSettings) -> bool:
    """Start the landing watcher (conveyor.flows.watch) unless it already runs; True when it was started now."""
    if _running_pid(settings, WATCHER):
        return False
    _spawn(settings, WATCHER, [sys.executable, "-m", WATCHER_MODULE])
    return True


def watcher_pid(settings: ConveyorSettings) -> int | None:
    """The live landing watcher's pid, if `conveyor up` started one."""
    return _running_pid(settings, WATCHER)


def _started(settings: ConveyorSettings) -> Iterator[tuple[str, int]]:
    for path in sorted(settings.pid_dir.glob("*.pid")) if settings.pid_dir.is_dir() else ():
        pid = _running_pid(settings, path.stem)
        if pid is None:
            path.unlink(missing_ok=True)  # stale: that process is gone
        else:
            yield path.stem, pid


def flush_prefect_clients(timeout_s: float = 5.0) -> None:
    """Send the logs and events this process still holds before it exits or the server stops."""
    APILogWorker.drain_all(timeout=timeout_s, at_exit=False)
    EventsWorker.drain_all(timeout=timeout_s, at_exit=False)


def stop_all(settings: ConveyorSettings, keep_server: bool = False) -> list[str]:
    """Stop exactly the processes `start_*` recorded, workers and watcher before the server; returns their names."""
    running = sorted(
        ((name, pid) for name, pid in _started(settings) if not (keep_server and name == _SERVER)),
        key=lambda item: item[0] == _SERVER,
    )
    for _, pid in running:
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    for name, pid in running:
        while _running_pid(settings, name) == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        if _running_pid(settings, name) == pid:
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _pid_file(settings, name).unlink(missing_ok=True)
    return [name for name, _ in running]
