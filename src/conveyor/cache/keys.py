"""A task call's cache key: the content of its data inputs, its other parameters, its code and the dependencies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import re
import types
from collections.abc import Callable, Iterator
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, get_type_hints

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prefect import Task
from pydantic import BaseModel

from conveyor.environment import lock_sha256
from conveyor.io.hashing import content_hash, hash_bytes
from conveyor.settings import get_settings

DISTRIBUTION = "conveyor"


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


def _is_project(obj: object) -> bool:
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    return str(module).split(".")[0] in get_settings().cache.code_packages


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


@cache  # per process: the code that runs is the code that was imported
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
    """The locked dependency set (``uv.lock <sha256>``), or without a lock the installed versions' hash."""
    if locked := lock_sha256():
        # `make install` installs exactly the lock (uv sync --frozen), so the lock names what is installed.
        return f"uv.lock {locked}"
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


def key_parts(
    function: Callable[..., Any], inputs: dict[str, Any], ignore: tuple[str, ...] = ()
) -> tuple[KeyParts, dict[str, Path]]:
    """The key components of calling ``function`` with ``inputs``, and where each data input lies."""
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
    _canonical(value, "result", set(), data, paths)
    return {str(paths[where]): digest for where, digest in data.items()}
