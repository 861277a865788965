"""`conveyor run`: start a deployment on its work pool and follow it to the end."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from conveyor.cli.console import CommandError, JsonFlag, settings, show


def run(
    deployment: Annotated[str, typer.Argument(help="FLOW/DEPLOYMENT, e.g. refit/default.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, VALUE read as JSON if it parses.")
    ] = None,
    as_json: JsonFlag = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the outcome, not the run as it goes.")
    ] = False,
) -> None:
    """Run a deployment on its work pool, follow it (states, tasks, progress), and print its outcome."""
    from prefect.client.schemas.objects import FlowRun

    from conveyor.stack.follow import follow_run
    from conveyor.stack.status import describe_run, run_text, start_deployment_run

    started = start_deployment_run(deployment, _parse_params(param or []))
    live = not (quiet or as_json)
    if live:
        typer.echo(f"{'flow run':<12} {started.name}: {settings().ui_url}/runs/flow-run/{started.id}")
    ended = started
    for step in follow_run(started.id):
        if isinstance(step, FlowRun):
            ended = step
        elif live:
            typer.echo(step)
    outcome = describe_run(settings(), ended)
    show(outcome, as_json, ("\n" if live else "") + run_text(outcome))
    if outcome["state"] != "COMPLETED":
        raise typer.Exit(1)


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
