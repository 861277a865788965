"""Stored result records: checked (JSON envelope, MAC, outputs) before Prefect may deserialize them, or discarded.

A record names its own serializer, and Prefect deserializes with whatever it names (pickle runs code, and even the
JSON serializer can name the function that decodes it). So a record is read here as raw bytes first: it must carry
exactly the JSON serializer ``@cached_task`` writes, and the MAC its ledger entry holds (``mac``), or Prefect never
sees it.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from pathlib import Path

from prefect.context import TaskRunContext
from prefect.serializers import JSONSerializer

from conveyor.cache.mac import record_mac
from conveyor.io.hashing import content_hash

# The serializer, field for field, that ``@cached_task`` writes (result_serializer="json").
_JSON_SERIALIZER = JSONSerializer().model_dump(mode="json")


def _read_record(ctx: TaskRunContext, key: str) -> bytes | None:
    try:
        # Private API: read_path is @async_dispatch and would return a coroutine under a running loop; `_sync=True`
        # forces the sync variant, as Prefect 3.8's own result store does (prefect/results.py). No public flag exists.
        content = ctx.result_store.result_storage.read_path(key, _sync=True)  # type: ignore[union-attr,call-arg]
    except Exception:  # a missing or unreadable record is simply no record
        return None
    return content if isinstance(content, bytes) and content else None


def _serializer_problem(record: bytes) -> str | None:
    """Why a record's envelope must not reach Prefect: anything but the JSON serializer Conveyor writes."""
    try:
        serializer = json.loads(record)["metadata"]["serializer"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return "stored result is not a JSON result record; refused unread"
    if serializer != _JSON_SERIALIZER:
        named = serializer.get("type") if isinstance(serializer, dict) else serializer
        return f"stored result names the serializer {str(named)[:40]!r}, not Conveyor's JSON one; refused unread"
    return None


def problem_with(db: sqlite3.Connection, ctx: TaskRunContext, key: str) -> str | None:
    """Why a stored result must not be reused (None: it may); 'absent' when nothing is stored."""
    row = db.execute("SELECT record_checksum, outputs FROM entries WHERE key = ?", (key,)).fetchone()
    record = _read_record(ctx, key)
    if record is None:
        return "stored result is missing" if row else "absent"
    if row is None:
        return "stored result has no ledger entry"
    if problem := _serializer_problem(record):
        return problem
    mac, outputs = row
    if not hmac.compare_digest(str(mac), record_mac(key, record, str(outputs))):
        return "stored result does not verify (corrupted, or written by someone else); refused unread"
    for path, digest in json.loads(outputs).items():
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
