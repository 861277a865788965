"""Stored result records: read, verified against the ledger and the outputs they name, or discarded."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from prefect.context import TaskRunContext

from conveyor.io.hashing import content_hash, hash_bytes


def _read_record(ctx: TaskRunContext, key: str) -> bytes | None:
    try:
        # Private API: read_path is @async_dispatch and would return a coroutine under a running loop; `_sync=True`
        # forces the sync variant, as Prefect 3.8's own result store does (prefect/results.py). No public flag exists.
        content = ctx.result_store.result_storage.read_path(key, _sync=True)  # type: ignore[union-attr,call-arg]
    except Exception:  # a missing or unreadable record is simply no record
        return None
    return content if isinstance(content, bytes) and content else None


def problem_with(db: sqlite3.Connection, ctx: TaskRunContext, key: str) -> str | None:
    """Why a stored result must not be reused (None: it may); 'absent' when nothing is stored."""
    row = db.execute("SELECT record_checksum, outputs FROM entries WHERE key = ?", (key,)).fetchone()
    record = _read_record(ctx, key)
    if record is None:
        return "stored result is missing" if row else "absent"
    if row is None:
        return "stored result has no ledger entry"
    if hash_bytes(record) != row[0]:
        return "stored result is corrupted (checksum mismatch)"
    for path, digest in json.loads(row[1]).items():
        try:
            if content_hash(Path(path)) != digest:
                return f"output {path} changed since it was cached"
        except FileNotFoundError:
            return f"output {path} is missing"
    return None


def discard(db: sqlite3.Connection, ctx: TaskRunContext, key: str) -> None:
    """Make a stored result unusable: Prefect treats an empty record as no record, and recomputes over it."""
    if _read_record(ctx, key) is not None:
        # Private API, as in _read_record above.
        ctx.result_store.result_storage.write_path(key, b"", _sync=True)  # type: ignore[union-attr,call-arg]
    db.execute("DELETE FROM entries WHERE key = ?", (key,))
