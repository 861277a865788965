"""One writer per model in the registry, across every pool and host: a Prefect global concurrency limit as a lock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from prefect import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists

# The locks this context holds: a registration that points `dev` at its version moves the alias under the same lock.
_HELD: ContextVar[frozenset[str]] = ContextVar("conveyor_registry_locks_held", default=frozenset())


def registry_lock_name(model_name: str) -> str:
    """The global concurrency limit that serves as a model's registry lock."""
    return f"conveyor-registry-{model_name}"


def _ensure_one_slot(name: str) -> None:
    """Create the limit with one slot; Prefect skips a limit that does not exist, which would lock nothing."""
    with get_client(sync_client=True) as client:
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            return
        except ObjectAlreadyExists:
            pass
        existing = client.read_global_concurrency_limit_by_name(name)
        if existing.limit != 1 or not existing.active:  # edited in the UI: a lock has exactly one slot
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))


@contextmanager
def registry_lock(model_name: str) -> Iterator[None]:
    """Hold a model's registry lock: its reservations and registrations never interleave, whichever pool runs them.

    The slot is a lease the holder renews; a holder that dies frees it when the lease runs out (5 minutes).
    Re-entrant within one context: taking a lock this context already holds takes no second slot.
    """
    name = registry_lock_name(model_name)
    held = _HELD.get()
    if name in held:
        yield
        return
    _ensure_one_slot(name)
    with concurrency(name, occupy=1, strict=True):
        token = _HELD.set(held | {name})
        try:
            yield
        finally:
            _HELD.reset(token)
