"""`conveyor`: the command line for local work with Conveyor; every command group lives in its own module."""

from __future__ import annotations

import sys
import traceback

import httpx
import typer

from conveyor.cli import cache, data, models, registry, runs, serving, stack
from conveyor.cli.console import CommandError, fail, settings
from conveyor.settings import ConveyorSettings

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
app.command()(serving.serve)
app.command()(data.validate)
app.command("hash")(data.hash_command)
app.add_typer(cache.cache_app, name="cache")
app.add_typer(registry.registry_app, name="registry")


def main() -> None:
    """Console-script entry: every failure, a bad setting included, ends in one sentence and exit code 1."""
    from conveyor.stack.errors import StackError, UnknownDeploymentError

    loaded: ConveyorSettings | None = None
    try:
        loaded = settings()  # inside the boundary: a bad CONVEYOR_* value is one sentence too
        app()
    except httpx.ConnectError:
        fail(f"cannot reach the Prefect API at {settings().api_url}; start it with `conveyor up`.")
    except httpx.HTTPStatusError as error:
        fail(_refused(error, settings().api_url))
    except (CommandError, StackError, UnknownDeploymentError, LookupError, ValueError, OSError) as error:
        fail(_sentence(error))
    except Exception as error:  # a bug: still one sentence, with the traceback kept where a report can quote it
        fail(_unexpected(error, loaded))
    finally:
        if "prefect" in sys.modules:
            from conveyor.stack.local import flush_prefect_clients

            # Block loads emit events; flush them quietly instead of Prefect warning about them at exit.
            flush_prefect_clients()


def _sentence(error: Exception) -> str:
    """An expected error as the sentence a person reads; an OS error names what failed and on which path."""
    if isinstance(error, OSError) and error.strerror and str(error).startswith("[Errno"):
        paths = " -> ".join(str(p) for p in (error.filename, error.filename2) if p is not None)
        return f"{error.strerror}{f': {paths}' if paths else ''}."
    return str(error)


def _refused(error: httpx.HTTPStatusError, api_url: str) -> str:
    """An error status from the Prefect API as one sentence; a 401 says which setting holds the credentials."""
    if error.response.status_code == 401:
        return (
            f"the Prefect API at {api_url} refused the request (401 Unauthorized); set CONVEYOR_API_AUTH_STRING "
            "to the user:password its server was started with."
        )
    return f"the Prefect API at {api_url} answered {error.response.status_code} {error.response.reason_phrase}."


def _unexpected(error: Exception, loaded: ConveyorSettings | None) -> str:
    """One sentence for an error no command expected; its traceback goes to the CLI's error log when there is one."""
    sentence = f"unexpected {type(error).__name__}: {error}"
    if loaded is None:
        return f"{sentence}."
    log = loaded.log_dir / "cli-errors.log"
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.write("".join(traceback.format_exception(error)) + "\n")
    except OSError:
        return f"{sentence}."
    return f"{sentence}; the traceback is in {log}."
