"""Stack commands: bring the local stack up and down, show its state, run the demo."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli.console import JsonFlag, settings, show
from conveyor.cli.data import generate
from conveyor.cli.runs import run


def up(as_json: JsonFlag = False) -> None:
    """Start the local stack: Prefect server, work pools, blocks, keys, deployments, workers, watcher (idempotent)."""
    from conveyor.stack import local as stack

    current = settings()
    started = stack.start_server(current)
    pools = stack.ensure_work_pools()
    block = stack.ensure_stores_block(current)
    keys, edge_public_key = stack.ensure_key_blocks()
    stack.deploy_all(current)
    workers = stack.start_workers(current)
    watcher = stack.start_watcher(current)
    summary = {
        "api_url": current.api_url,
        "ui_url": current.ui_url,
        "server_started": started,
        "work_pools_created": pools,
        "stores_block_created": block,
        "key_blocks_created": keys,
        "edge_public_key": edge_public_key,
        "workers_started": workers,
        "watcher_started": watcher,
    }
    show(
        summary,
        as_json,
        f"Conveyor is up: UI {current.ui_url}, workers for {', '.join(current.stack.worker_pools)}, landing watcher.",
    )


def down(as_json: JsonFlag = False) -> None:
    """Stop exactly the server, workers and landing watcher `conveyor up` started."""
    from conveyor.stack import local as stack

    stopped = stack.stop_all(settings())
    show({"stopped": stopped}, as_json, f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")


def status(as_json: JsonFlag = False) -> None:
    """Show the server, work pools and their workers, deployments, landing folder and model store."""
    from conveyor.stack.status import describe_status, status_text

    report = describe_status(settings())
    show(report, as_json, status_text(report))


def demo(
    rows: Annotated[int, typer.Option(min=1, help="Telemetry rows of the first partition.")] = 50_000,
) -> None:
    """Bring the stack up, land a first partition unless one exists, and run refit/default."""
    from conveyor.blocks import ConveyorStores
    from conveyor.data.snapshots import landed_partitions
    from conveyor.schema.telemetry import TELEMETRY

    up(as_json=False)
    landing = ConveyorStores.resolve().landing_path
    if not landed_partitions(landing, TELEMETRY):
        generate(rows=rows, day=None, days=1, out=landing)
    run("refit/default", param=None, as_json=False)
