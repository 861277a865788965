"""Prefect cache policies: the content-hash key with verified hits, and the never-cached marker with its reason."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.transactions import Transaction

from conveyor.cache.keys import KeyParts, collect_output_hashes, key_parts
from conveyor.cache.ledger import Decision, Outcome, closest_earlier, ledger, record_decision
from conveyor.cache.mac import record_mac
from conveyor.cache.records import discard, problem_with
from conveyor.io.hashing import content_hash
from conveyor.settings import get_settings


@dataclasses.dataclass
class _Pending:
    parts: KeyParts
    paths: dict[str, Path]
    context: TaskRunContext


_pending: dict[str, _Pending] = {}
_run_keys: dict[str, str] = {}
_pending_lock = threading.Lock()


def run_key(task_run_id: str) -> str | None:
    """The cache key a task run of this process computed (None: it has none)."""
    return _run_keys.get(task_run_id)


def _forced(flow_parameters: dict[str, Any]) -> bool:
    return get_settings().cache.force_recompute or flow_parameters.get("force_recompute") is True


@dataclasses.dataclass
class ContentHash(CachePolicy):
    """Key = task + content of its data inputs + its other parameters + its code (transitively) + dependencies."""

    ignore: tuple[str, ...] = ()

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """The key of this call; decides (and logs) hit or miss, discarding stored results that fail checks."""
        parts, paths = key_parts(task_ctx.task.fn, inputs, self.ignore)
        key = parts.key
        outcome: Outcome
        with ledger() as db:
            problem = problem_with(db, task_ctx, key)
            if _forced(flow_parameters):
                outcome, reason = "miss", "recompute forced"
                discard(db, task_ctx, key)
            elif problem is None:
                outcome, reason = "hit", "inputs, code and dependencies unchanged"
                db.execute("UPDATE entries SET used = ? WHERE key = ?", (time.time(), key))
            elif problem != "absent":
                outcome, reason = "miss", f"{problem}; recomputing"
                discard(db, task_ctx, key)
            else:
                changes = closest_earlier(db, parts)
                outcome = "miss"
                reason = "; ".join(changes or ["stored result was pruned"]) if changes is not None else "none found"
            decision = Decision(task_ctx.task.name, task_ctx.task_run.name, outcome, reason, key)
            record_decision(db, task_ctx, decision)
        with _pending_lock:
            _pending[key] = _Pending(parts, paths, task_ctx)
            _run_keys[str(task_ctx.task_run.id)] = key
        # A stored result that failed its checks is worth a warning; an ordinary hit or miss is not.
        suspicious = outcome == "miss" and problem not in ("absent", None)
        log = get_run_logger().warning if suspicious else get_run_logger().info
        log("Cache %s: %s (key %s)", outcome, reason, key[:12])
        return key


@dataclasses.dataclass
class NotCached(CachePolicy):
    """For tasks that look up current state or act on the world: never cached, but listed with the reason."""

    why: str = "reads current state"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        """No key: records the decision only."""
        with ledger() as db:
            record_decision(db, task_ctx, Decision(task_ctx.task.name, task_ctx.task_run.name, "not cached", self.why))
        return None


def seal_cache_entry(transaction: Transaction) -> None:
    """Before a result is stored: re-hash its data inputs (changed while running: store nothing), ledger its MAC."""
    if not transaction.key:
        return
    with _pending_lock:
        pending = _pending.pop(transaction.key, None)
    if pending is None:
        return
    moved = sorted(where for where, path in pending.paths.items() if _rehash(path) != pending.parts.data.get(where))
    with ledger() as db:
        if moved:
            transaction.write_on_commit = False
            reason = f"input {', '.join(moved)} changed while the task ran; result not cached"
            get_run_logger().warning("Cache entry not written: %s", reason)
            decision = Decision(
                pending.context.task.name, pending.context.task_run.name, "miss", reason, transaction.key
            )
            record_decision(db, pending.context, decision)
            return
        # Private API: the ResultRecord the store is about to write. Prefect 3.8's Transaction.stage() keeps it only
        # as _staged_value and on_commit hooks get no other handle on it.
        record = transaction._staged_value
        serialized = record.serialize() if hasattr(record, "serialize") else b""
        outputs = json.dumps(collect_output_hashes(getattr(record, "result", None)))
        now = time.time()
        db.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                transaction.key,
                pending.parts.task,
                json.dumps(dataclasses.asdict(pending.parts)),
                record_mac(transaction.key, serialized, outputs),
                outputs,
                now,
                now,
            ),
        )


def _rehash(path: Path) -> str | None:
    try:
        return content_hash(path)
    except FileNotFoundError:
        return None
