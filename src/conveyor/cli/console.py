"""What a user sees of a command: its result as text or JSON, and one sentence on failure.

Imported first by every command module: it points this process's Prefect at Conveyor's API before prefect loads.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any, NoReturn

import typer

from conveyor.settings import configure_prefect_env

# Before prefect is imported anywhere: this process talks to Conveyor's API, whatever the shell says.
SETTINGS = configure_prefect_env()

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DatasetOption = Annotated[
    str | None, typer.Option("--dataset", help="Dataset spec by name; default: CONVEYOR_DATASET (telemetry).")
]


class CommandError(Exception):
    """A command could not do what was asked; the message is the one sentence the user sees."""


def show(data: dict[str, Any] | list[Any], as_json: bool, text: str) -> None:
    """Print a result: JSON when asked, otherwise the text."""
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one sentence on stderr and an exit status."""
    typer.secho(f"Error: {message}", err=True, fg="red")
    sys.exit(code)
