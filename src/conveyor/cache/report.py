"""What a run's cache did, per task run: the ``cache-explain`` artifact and the rows `conveyor cache explain` prints."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.runtime import flow_run as runtime_flow_run

from conveyor.cache.decorators import uncached_task
from conveyor.cache.ledger import Decision, decisions_of


def explain_table(decisions: list[Decision]) -> list[dict[str, str]]:
    """The rows of a cache report: task run, outcome, reason."""
    return [
        {"task run": d.task_run_name, "cache": d.outcome, "why": d.reason, "key": (d.key or "")[:12]} for d in decisions
    ]


@uncached_task("Report cache use", why="reports on this run")
def report_cache_use() -> list[Decision]:
    """Publish, per task run of this flow run and its subflows, hit or miss and why, as a table artifact."""
    flow_run_id = str(runtime_flow_run.get_id() or "")
    decisions = decisions_of(flow_run_id)
    hits = sum(d.outcome == "hit" for d in decisions)
    misses = sum(d.outcome == "miss" for d in decisions)
    create_table_artifact(
        explain_table(decisions),
        key="cache-explain",
        description=f"Task cache: {hits} hits, {misses} misses (`conveyor cache explain {flow_run_id}`)",
    )
    get_run_logger().info(
        "Task cache: %d hits, %d misses, %d not cacheable", hits, misses, len(decisions) - hits - misses
    )
    return decisions


@contextmanager
def reporting_cache_use() -> Iterator[None]:
    """Around a flow's body: publish its cache report when the body ends, completed or failed."""
    try:
        yield
    finally:
        try:
            report_cache_use()
        except Exception as error:  # the report must never hide why the run failed
            get_run_logger().warning("The cache report could not be published: %s", error)
