"""Every task cached by what it depends on: data bytes, parameters, the code it runs and the locked dependencies.

A key is built from four components. Hits are verified (result record checksum, output files) before they are
reused; a task whose data inputs changed while it ran writes no entry; every decision is kept in a ledger so a run
can say, per task, why it hit or missed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import re
import shutil
import sqlite3
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, get_type_hints

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prefect import Task, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.runtime import flow_run as runtime_flow_run
from prefect.settings import get_current_settings
from prefect.transactions import Transaction
from pydantic import BaseModel

from blocks.settings import get_settings
from tasks.hashing import content_hash, hash_bytes

P = ParamSpec("P")
R = TypeVar("R")

DISTRIBUTION = "conveyor"
COMPONENTS = ("data", "params", "code", "dependencies")
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


class Content:
    """Marks a path (argument or model field) whose bytes, not its name, make up the key and are verified on hits."""


class Descriptive:
    """Marks a model field that describes how a result was made (timings, names) and is no part of any key."""


class Location:
    """Marks a path argument naming a store to use: the key holds the path itself, never the store's content."""


@dataclasses.dataclass
class KeyParts:
    """The four components of one task call's cache key."""

    task: str
    data: dict[str, str]
    params: str
    code: dict[str, str]
    dependencies: str

    @property
    def key(self) -> str:
        """The cache key: a hash of all components."""
        return hash_bytes(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())

    def changes_from(self, earlier: KeyParts) -> list[str]:
        """What differs from an earlier call of the same task, one phrase per changed component."""
        changed = []
        if self.data != earlier.data:
            inputs = sorted(n for n in {*self.data, *earlier.data} if self.data.get(n) != earlier.data.get(n))
            changed.append(f"data changed ({', '.join(inputs)})")
        if self.params != earlier.params:
            changed.append("params changed")
        if self.code != earlier.code:
            names = sorted(n for n in {*self.code, *earlier.code} if self.code.get(n) != earlier.code.get(n))
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            changed.append(f"code changed ({shown})")
        if self.dependencies != earlier.dependencies:
            changed.append("dependencies changed")
        return changed


@dataclasses.dataclass
class Decision:
    """Whether one task run reused a cached result, and why or why not."""

    task: str
    task_run_name: str
    outcome: str  # hit | miss | not cached
    reason: str
    key: str | None = None


# --- the key's components -------------------------------------------------------------------------------------------


def _is_project(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return str(module).split(".")[0] in get_settings().code_packages


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _referenced_names(function: types.FunctionType) -> set[str]:
    return {name for code in _code_objects(function.__code__) for name in code.co_names}


def _functions_of(obj: object) -> list[types.FunctionType]:
    if isinstance(obj, types.FunctionType):
        return [obj]
    if isinstance(obj, type):
        found = []
        for member in vars(obj).values():
            member = getattr(member, "__func__", member)  # staticmethod, classmethod
            member = getattr(member, "fget", member)  # property
            if isinstance(member, types.FunctionType):
                found.append(member)
        return found
    return []


def _references(obj: object) -> Iterator[object]:
    """Project functions, classes and constants that ``obj``'s code names, resolved through modules it uses."""
    if isinstance(obj, type):
        yield from (base for base in obj.__bases__ if _is_project(base))
    for function in _functions_of(obj):
        names = _referenced_names(function)
        for name in names:
            if name not in function.__globals__:
                continue
            value = function.__globals__[name]
            if isinstance(value, types.ModuleType):
                if _is_project(value):
                    yield from (getattr(value, attr) for attr in names if hasattr(value, attr))
            elif isinstance(value, Task):
                yield value.fn
            else:
                yield (function.__module__, name, value)


def _is_constant(name: str, value: object) -> bool:
    """Immutable values, and UPPER_CASE names (constants by convention); never mutable module state."""
    immutable = value is None or isinstance(value, str | bytes | int | float | tuple | frozenset | re.Pattern)
    return not callable(value) and (immutable or name.lstrip("_").isupper())


def _constant_repr(value: object) -> str | None:
    text = repr(value)
    return None if " at 0x" in text else text  # an address differs per process: not a stable fingerprint


def code_fingerprint(function: Callable[..., Any]) -> dict[str, str]:
    """Hashes of the source of ``function`` and of every project function, class and constant it reaches."""
    found: dict[str, str] = {}
    pending_root = inspect.unwrap(function)  # the task itself counts wherever it is defined
    pending: list[object] = [pending_root]
    while pending:
        obj = pending.pop()
        if isinstance(obj, tuple):  # a module-level name: a project object, or a constant to fingerprint
            module, name, value = obj
            if _is_project(value) and isinstance(value, type | types.FunctionType):
                pending.append(value)
            elif _is_constant(name, value) and (text := _constant_repr(value)) is not None:
                found.setdefault(f"{module}.{name}", hash_bytes(text.encode()))
            continue
        if not (_is_project(obj) or obj is pending_root):
            continue
        qualified = f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"
        if qualified in found:
            continue
        try:
            found[qualified] = hash_bytes(inspect.getsource(obj).encode())  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue
        pending.extend(_references(obj))
    return dict(sorted(found.items()))


@cache
def dependency_fingerprint() -> str:
    """Hash of the installed versions of every package Conveyor requires, transitively."""
    pending, pinned = [DISTRIBUTION], {}
    while pending:
        name = canonicalize_name(pending.pop())
        if name in pinned:
            continue
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        pinned[name] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return hash_bytes(json.dumps(sorted(pinned.items())).encode())


def _marks(field_metadata: list[Any]) -> set[type]:
    return {m for m in field_metadata if isinstance(m, type)}


def _canonical(value: Any, where: str, marks: set[type], data: dict[str, str], paths: dict[str, Path]) -> Any:
    """A JSON form of ``value`` for the params hash; paths to data are replaced by (and recorded as) content hashes."""
    if Location in marks:
        return str(value)
    if Content in marks or isinstance(value, Path):
        if value is None:
            return None
        paths[where] = Path(value)
        data[where] = content_hash(Path(value))
        return {"content": where}
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {
            name: _canonical(getattr(value, name), f"{where}.{name}", _marks(field.metadata), data, paths)
            for name, field in fields.items()
            if Descriptive not in _marks(field.metadata)
        }
    if isinstance(value, list | tuple):
        return [_canonical(item, f"{where}[{i}]", marks, data, paths) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _canonical(v, f"{where}[{k}]", marks, data, paths) for k, v in sorted(value.items())}
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{where}: a {type(value).__name__} cannot be part of a cache key; pass data as a path.")


def _argument_marks(function: Callable[..., Any]) -> dict[str, set[type]]:
    hints = get_type_hints(function, include_extras=True)
    return {name: _marks(list(getattr(hint, "__metadata__", ()))) for name, hint in hints.items()}


def key_parts(function: Callable[..., Any], inputs: dict[str, Any], ignore: tuple[str, ...] = ()) -> KeyParts:
    """The components of the key of calling ``function`` with ``inputs``; ``ignore`` names inputs that don't matter."""
    parts, _ = _key_parts_and_paths(function, inputs, ignore)
    return parts


def _key_parts_and_paths(
    function: Callable[..., Any], inputs: dict[str, Any], ignore: tuple[str, ...]
) -> tuple[KeyParts, dict[str, Path]]:
    marks = _argument_marks(function)
    data: dict[str, str] = {}
    paths: dict[str, Path] = {}
    params = {
        name: _canonical(value, name, marks.get(name, set()), data, paths)
        for name, value in sorted(inputs.items())
        if name not in ignore
    }
    parts = KeyParts(
        task=f"{function.__module__}.{function.__qualname__}",
        data=data,
        params=hash_bytes(json.dumps(params, sort_keys=True).encode()),
        code=code_fingerprint(function),
        dependencies=dependency_fingerprint(),
    )
    return parts, paths


def collect_output_hashes(value: Any) -> dict[str, str]:
    """Content hashes of every ``Content`` path in a task's result, by path: what a later hit must still find."""
    data: dict[str, str] = {}
    paths: dict[str, Path] = {}
    _canonical(value, "result", set(), data, paths) if isinstance(value, BaseModel | list | tuple | dict) else None
    return {str(paths[where]): digest for where, digest in data.items()}


# --- the ledger -----------------------------------------------------------------------------------------------------


@contextmanager
def ledger() -> Iterator[sqlite3.Connection]:
    """The cache ledger: one entry per cached result, one decision per task run."""
    path = get_settings().task_cache_dir / "ledger.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for statement in _LEDGER_SCHEMA:
            db.execute(statement)
        yield db


def _closest_earlier(db: sqlite3.Connection, parts: KeyParts) -> list[str] | None:
    """What changed since the most similar earlier entry of the same task (None: the task was never cached)."""
    rows = db.execute("SELECT parts FROM entries WHERE task = ? ORDER BY created DESC", (parts.task,)).fetchall()
    candidates = [parts.changes_from(KeyParts(**json.loads(row[0]))) for row in rows]
    return min(candidates, key=len) if candidates else None


def _record_decision(db: sqlite3.Connection, ctx: TaskRunContext, decision: Decision) -> None:
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


# --- verification ---------------------------------------------------------------------------------------------------


def _read_record(ctx: TaskRunContext, key: str) -> bytes | None:
    try:
        # _sync: the block method is async-dispatching; Prefect's own store calls it this way.
        content = ctx.result_store.result_storage.read_path(key, _sync=True)  # type: ignore[union-attr,call-arg]
    except Exception:  # a missing or unreadable record is simply no record
        return None
    return content if isinstance(content, bytes) and content else None


def _problem_with(db: sqlite3.Connection, ctx: TaskRunContext, key: str) -> str | None:
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


def _discard(db: sqlite3.Connection, ctx: TaskRunContext, key: str) -> None:
    """Make a stored result unusable: Prefect treats an empty record as no record, and recomputes over it."""
    if _read_record(ctx, key) is not None:
        ctx.result_store.result_storage.write_path(key, b"", _sync=True)  # type: ignore[union-attr,call-arg]
    db.execute("DELETE FROM entries WHERE key = ?", (key,))


# --- the policy -----------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Pending:
    parts: KeyParts
    paths: dict[str, Path]
    context: TaskRunContext


_pending: dict[str, _Pending] = {}
_run_keys: dict[str, str] = {}
_pending_lock = threading.Lock()


def _forced(flow_parameters: dict[str, Any]) -> bool:
    return get_settings().force_recompute or flow_parameters.get("force_recompute") is True


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
        parts, paths = _key_parts_and_paths(task_ctx.task.fn, inputs, self.ignore)
        key = parts.key
        with ledger() as db:
            problem = _problem_with(db, task_ctx, key)
            if _forced(flow_parameters):
                outcome, reason = "miss", "recompute forced"
                _discard(db, task_ctx, key)
            elif problem is None:
                outcome, reason = "hit", "inputs, code and dependencies unchanged"
                db.execute("UPDATE entries SET used = ? WHERE key = ?", (time.time(), key))
            elif problem != "absent":
                outcome, reason = "miss", f"{problem}; recomputing"
                _discard(db, task_ctx, key)
            else:
                changes = _closest_earlier(db, parts)
                outcome = "miss"
                reason = "; ".join(changes or ["stored result was pruned"]) if changes is not None else "none found"
            decision = Decision(task_ctx.task.name, task_ctx.task_run.name, outcome, reason, key)
            _record_decision(db, task_ctx, decision)
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
            _record_decision(db, task_ctx, Decision(task_ctx.task.name, task_ctx.task_run.name, "not cached", self.why))
        return None


def seal_cache_entry(transaction: Transaction) -> None:
    """Before a result is stored: re-hash its data inputs (changed while running: store nothing) and ledger it."""
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
            _record_decision(db, pending.context, decision)
            return
        record = transaction._staged_value  # the ResultRecord the store is about to write
        serialized = record.serialize() if hasattr(record, "serialize") else b""
        outputs = collect_output_hashes(getattr(record, "result", None))
        now = time.time()
        db.execute(
            "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                transaction.key,
                pending.parts.task,
                json.dumps(dataclasses.asdict(pending.parts)),
                hash_bytes(serialized),
                json.dumps(outputs),
                now,
                now,
            ),
        )


def _rehash(path: Path) -> str | None:
    try:
        return content_hash(path)
    except FileNotFoundError:
        return None


def cached_task(name: str, *, ignore: tuple[str, ...] = (), **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` with the content-hash cache policy, verified JSON result records, and the sealing hook."""

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(
            fn=function,
            name=name,
            cache_policy=ContentHash(ignore=ignore),
            result_serializer="json",
            persist_result=True,
            on_commit=[seal_cache_entry],
            **options,
        )

    return decorate


def uncached_task(name: str, *, why: str, **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]:
    """``@task`` that is never cached (it reads current state or acts on the world), listed with ``why``."""

    def decorate(function: Callable[P, R]) -> Task[P, R]:
        return Task(fn=function, name=name, cache_policy=NotCached(why=why), **options)

    return decorate


def task_output_dir() -> Path:
    """A fresh folder for the running task's files, under its cache key: results point here, hits find them here."""
    context = TaskRunContext.get()
    if context is None:
        raise RuntimeError("task_output_dir() is only available inside a task run.")
    run_id = str(context.task_run.id)
    key = _run_keys.get(run_id, "uncached")
    folder = get_settings().task_cache_dir / "outputs" / key / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def prune_cache(older_than: dt.timedelta) -> tuple[int, int]:
    """Drop cache entries (records, outputs) not used for ``older_than``; returns (entries, output folders) removed."""
    cache_dir = get_settings().task_cache_dir
    cutoff = time.time() - older_than.total_seconds()
    with ledger() as db:
        stale = [row[0] for row in db.execute("SELECT key FROM entries WHERE used < ?", (cutoff,)).fetchall()]
        records = get_current_settings().results.local_storage_path
        for key in stale:
            (records / key).unlink(missing_ok=True)
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
        db.execute("DELETE FROM decisions WHERE at < ?", (cutoff,))
        live = {row[0] for row in db.execute("SELECT key FROM entries").fetchall()}
    removed = 0
    outputs = cache_dir / "outputs"
    for folder in sorted(outputs.iterdir()) if outputs.is_dir() else []:
        if folder.name not in live and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder)
            removed += 1
    return len(stale), removed


@uncached_task("Copy outputs", why="writes where the user asked")
def copy_outputs(files: list[str], folder: Path) -> list[str]:
    """Copy files a task made (they live in the task cache) into a folder of the user's choosing."""
    folder.mkdir(parents=True, exist_ok=True)
    return [str(shutil.copy2(source, folder / Path(source).name)) for source in files]


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
