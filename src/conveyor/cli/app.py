"""`conveyor`: the command line for local work with Conveyor; every command group lives in its own module."""

from __future__ import annotations

import sys

import typer

from conveyor.cli import cache, data, models, runs, stack
from conveyor.cli.console import SETTINGS, CommandError, fail

app = typer.Typer(
    name="conveyor",
    help="Continuous integration and delivery for machine learning, as Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command()(data.generate)
app.command()(stack.up)
app.command()(stack.down)
app.command()(stack.status)
app.command()(runs.run)
app.command()(stack.demo)
app.command()(models.models)
app.command("train")(models.train_command)
app.command("tune")(models.tune_command)
app.command("edge-run")(models.edge_run)
app.command()(data.validate)
app.command("hash")(data.hash_command)
app.add_typer(cache.cache_app, name="cache")


def main() -> None:
    """Console-script entry: every expected failure ends in one sentence and exit code 1."""
    import httpx

    from conveyor.stack.errors import StackError, UnknownDeploymentError

    try:
        app()
    except httpx.ConnectError:
        fail(f"cannot reach the Prefect API at {SETTINGS.api_url}; start it with `conveyor up`.")
    except (CommandError, StackError, UnknownDeploymentError, LookupError, ValueError, OSError) as error:
        fail(str(error))
    finally:
        if "prefect" in sys.modules:
            from conveyor.stack.local import flush_prefect_clients

            # Block loads emit events; flush them quietly instead of Prefect warning about them at exit.
            flush_prefect_clients()
