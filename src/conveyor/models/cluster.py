"""Dask clusters for training: a local one per run, or an existing one reached by address."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

import dask
from distributed import Client, LocalCluster, Security
from prefect_dask.task_runners import DaskTaskRunner
from pydantic import BaseModel, Field

from conveyor.settings import get_settings


class ClusterSpec(BaseModel):
    """Where training runs: in this process, on a local Dask cluster, or on an existing one."""

    workers: int = Field(1, ge=1, description="Training ranks (Dask workers); 1 trains in the task's own process.")
    scheduler: str | None = Field(
        None,
        pattern=r"^(tcp|tls|ucx)://",
        description="Address of an existing Dask scheduler, e.g. tls://host:8786 (TLS with CONVEYOR_DASK_TLS_*).",
    )

    @property
    def distributed(self) -> bool:
        """Whether training goes through Dask at all."""
        return self.workers > 1 or self.scheduler is not None


def cluster_security(spec: ClusterSpec) -> Security | None:
    """The TLS credentials this host shows a tls:// scheduler (CONVEYOR_DASK_TLS_*); None for any other cluster."""
    if not (spec.scheduler and spec.scheduler.startswith("tls://")):
        return None
    tls = get_settings().dask
    files = {
        "CONVEYOR_DASK_TLS_CA_FILE": tls.dask_tls_ca_file,
        "CONVEYOR_DASK_TLS_CERT": tls.dask_tls_cert,
        "CONVEYOR_DASK_TLS_KEY": tls.dask_tls_key,
    }
    missing = [variable for variable, path in files.items() if path is None]
    if missing:
        raise ValueError(f"{spec.scheduler} is a TLS scheduler: set {', '.join(missing)} on this host.")
    unreadable = [f"{variable}={path}" for variable, path in files.items() if path and not path.is_file()]
    if unreadable:
        raise ValueError(f"No such TLS file: {', '.join(unreadable)}.")
    return Security(
        tls_ca_file=str(tls.dask_tls_ca_file),
        tls_client_cert=str(tls.dask_tls_cert),
        tls_client_key=str(tls.dask_tls_key),
        require_encryption=True,
    )


def free_port() -> int:
    """A TCP port nobody listens on, on the machine this runs on."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


@contextmanager
def dask_client(spec: ClusterSpec) -> Iterator[Client]:
    """A client of the cluster the spec names; a local cluster lives exactly as long as the block."""
    if spec.scheduler:
        with Client(spec.scheduler, timeout="30s", security=cluster_security(spec)) as client:
            yield client
        return
    # A dead rank must fail the attempt (Prefect retries it from the checkpoint), not be re-run by Dask alone.
    with (
        dask.config.set({"distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


def pick_ranks(client: Client, world: int) -> list[str]:
    """Worker addresses for ranks 0..world-1, in a stable order; fails if the cluster has too few workers."""
    client.wait_for_workers(world, timeout=60)
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    return workers[:world]


def rendezvous_address(client: Client, rank0: str) -> str:
    """tcp://host:port where rank 0 (on its worker's host) accepts the other ranks."""
    port = client.submit(free_port, workers=[rank0], pure=False).result()
    return f"tcp://{urlparse(rank0).hostname}:{port}"


def task_runner(spec: ClusterSpec) -> DaskTaskRunner:
    """Prefect's Dask task runner on the cluster the spec names: a local one of N workers, or one by address."""
    if spec.scheduler:
        security = cluster_security(spec)
        return DaskTaskRunner(address=spec.scheduler, client_kwargs={"security": security} if security else None)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": spec.workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )
