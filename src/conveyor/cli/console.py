"""What a user sees of a command: its result as text or JSON, and one sentence on failure.

Every command reads the settings through `settings()`; `main` reads them first, inside its error boundary, so a bad
``CONVEYOR_*`` value is one sentence, and this process's Prefect points at Conveyor's API before prefect loads.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Annotated, Any, NoReturn

import typer

from conveyor.settings import ConveyorSettings, configure_prefect_env

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DatasetOption = Annotated[
    str | None, typer.Option("--dataset", help="Dataset spec by name; default: CONVEYOR_DATASET (telemetry).")
]


class CommandError(Exception):
    """A command could not do what was asked; the message is the one sentence the user sees."""


@functools.cache
def settings() -> ConveyorSettings:
    """The settings, read once; the first call points Prefect at Conveyor's API (before prefect loads)."""
    return configure_prefect_env()


def show(data: dict[str, Any] | list[Any], as_json: bool, text: str) -> None:
    """Print a result: JSON when asked, otherwise the text."""
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def fail(message: str, code: int = 1) -> NoReturn:
    """End the command with one sentence, on one line, on stderr and an exit status."""
    typer.secho(f"Error: {' '.join(message.split())}", err=True, fg="red")
    sys.exit(code)
