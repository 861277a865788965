"""`conveyor cache`: why each task run hit or missed, and pruning entries no run uses."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer

from conveyor.cli.console import CommandError, JsonFlag, settings, show

cache_app = typer.Typer(help="Inspect and prune the task cache.", no_args_is_help=True)


@cache_app.command("explain")
def cache_explain(
    flow_run_id: Annotated[str, typer.Argument(help="A flow run's id, as in the Prefect UI.")],
    as_json: JsonFlag = False,
) -> None:
    """Per task run of a flow run (and its subflows): cache hit or miss, and which key component changed."""
    from uuid import UUID

    from conveyor.cache.ledger import decisions_of
    from conveyor.cache.report import explain_table

    try:
        UUID(flow_run_id)
    except ValueError:
        raise CommandError(f"{flow_run_id!r} is not a flow run id (a UUID, as in the Prefect UI).") from None
    rows = explain_table(decisions_of(flow_run_id))
    if not rows:
        raise CommandError(
            f"No cache decisions are recorded for flow run {flow_run_id} in {settings().task_cache_dir}."
        )
    width = max(len(r["task run"]) for r in rows)
    text = "\n".join(f"{r['task run']:<{width}}  {r['cache']:<10}  {r['why']}" for r in rows)
    show(rows, as_json, text)


@cache_app.command("prune")
def cache_prune(
    older_than: Annotated[int, typer.Option(min=0, help="Drop entries not used for this many days.")],
    as_json: JsonFlag = False,
) -> None:
    """Drop cached results (and their output files) that no run has used for N days."""
    from conveyor.cache.prune import prune_cache

    entries, folders = prune_cache(dt.timedelta(days=older_than))
    summary = {"entries_removed": entries, "output_folders_removed": folders}
    show(summary, as_json, f"Removed {entries} cache entries and {folders} output folders.")
