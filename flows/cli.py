"""`conveyor`: the command line for local work with Conveyor."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from blocks.settings import configure_prefect_env

# Before prefect is imported anywhere: this process talks to Conveyor's API, whatever the shell says.
SETTINGS = configure_prefect_env()

app = typer.Typer(
    name="conveyor",
    help="Continuous integration and delivery for machine learning, as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


class CommandError(Exception):
    """A command could not do what was asked; the message is the one sentence the user sees."""


def _print(data: dict[str, Any] | list[Any], as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@app.command()
def generate(
    rows: Annotated[int, typer.Option(min=1, help="Telemetry rows per day.")] = 50_000,
    day: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day of the (first) partition; default: today.")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Consecutive days to write, starting at --day.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Folder to write into; default: the landing folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fleet and its readings.")] = 7,
    drift: Annotated[list[str] | None, typer.Option(help="Shift a sensor, e.g. temperature:+5 (repeatable).")] = None,
    corrupt: Annotated[
        list[str] | None, typer.Option(help="Inject damage: nulls, types or range (repeatable).")
    ] = None,
    corrupt_fraction: Annotated[float, typer.Option(min=0, max=1, help="Share of rows damaged.")] = 0.02,
    as_json: JsonFlag = False,
) -> None:
    """Write synthetic telemetry partitions into the landing folder."""
    from blocks.stores import ConveyorStores
    from tasks.synthetic import Corruption, Drift, generate_telemetry, write_partition

    try:
        drifts = tuple(Drift.parse(d) for d in drift or ())
        corruptions = tuple(Corruption(c) for c in corrupt or ())
    except ValueError as error:
        raise CommandError(f"{error}; corruption kinds are {', '.join(Corruption)}.") from None
    target = out or ConveyorStores.resolve().landing_path
    first = day.date() if day else dt.date.today()
    written = []
    for offset in range(days):
        date = first + dt.timedelta(days=offset)
        frame = generate_telemetry(rows, date, seed, drifts, corruptions, corrupt_fraction)
        written.append(str(write_partition(frame, target, date)))
    _print({"partitions": written, "rows": rows}, as_json, "\n".join(written))


@app.command()
def up(as_json: JsonFlag = False) -> None:
    """Start the local stack: Prefect server, work pools, blocks, deployments, workers, landing watcher (idempotent)."""
    from deployments import stack

    started = stack.start_server(SETTINGS)
    pools = stack.ensure_work_pools()
    block = stack.ensure_stores_block(SETTINGS)
    stack.deploy_all(SETTINGS)
    workers = stack.start_workers(SETTINGS)
    watcher = stack.start_watcher(SETTINGS)
    summary = {
        "api_url": SETTINGS.api_url,
        "ui_url": SETTINGS.ui_url,
        "server_started": started,
        "work_pools_created": pools,
        "stores_block_created": block,
        "workers_started": workers,
        "watcher_started": watcher,
    }
    _print(
        summary,
        as_json,
        f"Conveyor is up: UI {SETTINGS.ui_url}, workers for {', '.join(SETTINGS.worker_pools)}, landing watcher.",
    )


@app.command()
def down(as_json: JsonFlag = False) -> None:
    """Stop exactly the server, workers and landing watcher `conveyor up` started."""
    from deployments import stack

    stopped = stack.stop_all(SETTINGS)
    _print({"stopped": stopped}, as_json, f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Show the server, work pools and their workers, deployments, landing folder and model store."""
    from deployments.status import describe_status, status_text

    report = describe_status(SETTINGS)
    _print(report, as_json, status_text(report))


@app.command()
def run(
    deployment: Annotated[str, typer.Argument(help="FLOW/DEPLOYMENT, e.g. refit/default.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, VALUE read as JSON if it parses.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a deployment on its work pool, wait for it, and print its outcome."""
    from deployments.status import describe_run, run_deployment_and_wait, run_text

    outcome = describe_run(SETTINGS, run_deployment_and_wait(deployment, _parse_params(param or [])))
    _print(outcome, as_json, run_text(outcome))
    if outcome["state"] != "COMPLETED":
        raise typer.Exit(1)


@app.command()
def demo(
    rows: Annotated[int, typer.Option(min=1, help="Telemetry rows of the first partition.")] = 50_000,
) -> None:
    """Bring the stack up, land a first partition unless one exists, and run refit/default."""
    from blocks.stores import ConveyorStores
    from tasks.synthetic import PARTITION_PREFIX

    up(as_json=False)
    landing = ConveyorStores.resolve().landing_path
    if not any(landing.glob(f"{PARTITION_PREFIX}*.parquet")):
        generate(rows=rows, day=None, days=1, out=landing)
    run("refit/default", param=None, as_json=False)


@app.command()
def models(as_json: JsonFlag = False) -> None:
    """List the registered model versions and their held-out metrics."""
    from blocks.stores import ConveyorStores
    from tasks.registry import list_versions

    versions = list_versions(ConveyorStores.resolve().model_path)
    lines = [
        f"{v.name} v{v.version}  ROC AUC {v.metrics['roc_auc']:.3f}  data {v.data_sha256[:12]}  {v.onnx_path}"
        for v in versions
    ]
    _print([v.model_dump() for v in versions], as_json, "\n".join(lines) or "No model version is registered yet.")


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--param takes KEY=VALUE; got {pair!r}.")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def main() -> None:
    """Console-script entry: every expected failure ends in one sentence and exit code 1."""
    import httpx

    from deployments.errors import StackError, UnknownDeploymentError

    try:
        app()
    except httpx.ConnectError:
        _fail(f"cannot reach the Prefect API at {SETTINGS.api_url}; start it with `conveyor up`.")
    except (CommandError, StackError, UnknownDeploymentError, ValueError, OSError) as error:
        _fail(str(error))
    finally:
        if "prefect" in sys.modules:
            from deployments.stack import flush_prefect_clients

            # Block loads emit events; flush them quietly instead of Prefect warning about them at exit.
            flush_prefect_clients()


def _fail(message: str) -> None:
    typer.secho(f"Error: {message}", err=True, fg="red")
    sys.exit(1)
