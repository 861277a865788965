"""The cache ledger: one entry per cached result, one decision (hit, miss, not cached, and why) per task run."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Literal

from prefect.context import TaskRunContext
from prefect.runtime import flow_run as runtime_flow_run

from conveyor.cache.keys import KeyParts
from conveyor.settings import get_settings

# record_checksum holds the record's MAC (cache/mac.py): a plain checksum anyone who can write the cache could forge.
_LEDGER_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS entries (
        key TEXT PRIMARY KEY, task TEXT, parts TEXT, record_checksum TEXT, outputs TEXT, created REAL, used REAL
    )""",
    """CREATE TABLE IF NOT EXISTS decisions (
        root_flow_run TEXT, flow_run TEXT, task_run TEXT PRIMARY KEY, task TEXT, task_run_name TEXT,
        outcome TEXT, reason TEXT, key TEXT, at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS decisions_by_run ON decisions (root_flow_run)",
    "CREATE INDEX IF NOT EXISTS entries_by_task ON entries (task)",
)


Outcome = Literal["hit", "miss", "not cached"]


@dataclasses.dataclass
class Decision:
    """Whether one task run reused a cached result, and why or why not."""

    task: str
    task_run_name: str
    outcome: Outcome
    reason: str
    key: str | None = None


class LedgerLockedError(TimeoutError):
    """Another process held the cache ledger for longer than this one would wait."""


@contextmanager
def ledger() -> Iterator[sqlite3.Connection]:
    """The cache ledger: one entry per cached result, one decision per task run."""
    settings = get_settings()
    path = settings.task_cache_dir / "ledger.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout_s = settings.cache.ledger_timeout_s
    try:
        with closing(sqlite3.connect(path, timeout=timeout_s, isolation_level=None)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            for statement in _LEDGER_SCHEMA:
                db.execute(statement)
            yield db
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        raise LedgerLockedError(
            f"The cache ledger {path} is locked by another process (waited {timeout_s:g} s, "
            "CONVEYOR_LEDGER_TIMEOUT_S); try again once the runs using the cache have finished."
        ) from error


def closest_earlier(db: sqlite3.Connection, parts: KeyParts) -> list[str] | None:
    """What changed since the most similar earlier entry of the same task (None: the task was never cached)."""
    rows = db.execute("SELECT parts FROM entries WHERE task = ? ORDER BY created DESC", (parts.task,)).fetchall()
    candidates = [parts.changes_from(KeyParts(**json.loads(row[0]))) for row in rows]
    return min(candidates, key=len) if candidates else None


def record_decision(db: sqlite3.Connection, ctx: TaskRunContext, decision: Decision) -> None:
    """Keep one task run's decision, under the outermost flow run so its report covers subflows too."""
    run = ctx.task_run
    flow_run_id = str(run.flow_run_id) if run.flow_run_id else ""
    db.execute(
        "INSERT OR REPLACE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            _root_flow_run(flow_run_id),
            flow_run_id,
            str(run.id),
            decision.task,
            decision.task_run_name,
            decision.outcome,
            decision.reason,
            decision.key,
            time.time(),
        ),
    )


_roots: dict[str, str] = {}


def _root_flow_run(flow_run_id: str) -> str:
    """The outermost flow run of a (sub)flow run: refit's report covers its validate subflow's tasks too."""
    if flow_run_id and flow_run_id not in _roots:
        _roots[flow_run_id] = str(runtime_flow_run.get_root_flow_run_id())
    return _roots.get(flow_run_id, "")


def decisions_of(flow_run_id: str) -> list[Decision]:
    """Every cache decision of a flow run and its subflows, in the order the tasks ran."""
    with ledger() as db:
        rows = db.execute(
            "SELECT task, task_run_name, outcome, reason, key FROM decisions WHERE root_flow_run = ? OR flow_run = ? "
            "ORDER BY at",
            (flow_run_id, flow_run_id),
        ).fetchall()
    return [Decision(*row) for row in rows]
