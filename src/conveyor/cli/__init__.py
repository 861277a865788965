"""The `conveyor` command line: `main` is the console script, `app` the Typer application."""

from conveyor.cli.app import app, main

__all__ = ["app", "main"]
