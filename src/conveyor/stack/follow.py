"""Following a flow run from a terminal, as Prefect's `--watch` does: its states, each task as it ends, progress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from uuid import UUID

from prefect import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import TaskRunSort

_LABEL = 12  # width of the label column, as in the summary `conveyor run` ends with


def _line(label: str, text: str) -> str:
    return f"{label:<{_LABEL}} {text}"


def follow_run(flow_run_id: UUID, poll_s: float = 1.0) -> Iterator[str | FlowRun]:
    """Yield a line per state change, finished task run (subflows' too) and progress step; last, the ended run."""
    state_seen: str | None = None
    tasks_seen: set[UUID] = set()
    progress_seen: dict[UUID, int] = {}
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.name != state_seen:
                state_seen = run.state.name
                ended = f": {run.state.message}" if run.state.is_final() and run.state.message else ""
                yield _line("state", f"{state_seen}{ended}")
            subflows = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id]))
            )
            runs = [flow_run_id, *(subflow.id for subflow in subflows)]
            for task in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=runs)), sort=TaskRunSort.EXPECTED_START_TIME_ASC
            ):
                if task.state and task.state.is_final() and task.id not in tasks_seen:
                    tasks_seen.add(task.id)
                    yield _line("task", f"{task.name}: {task.state.name}")
            for artifact in client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=runs), type=ArtifactFilterType(any_=["progress"])
                )
            ):
                percent = int(float(artifact.data or 0))  # type: ignore[arg-type]
                if progress_seen.get(artifact.id) != percent:
                    progress_seen[artifact.id] = percent
                    yield _line("progress", f"{percent:3d} %  {artifact.description or ''}".rstrip())
            if run.state and run.state.is_final():
                yield run
                return
            time.sleep(poll_s)
