"""Aliases: names (dev, staging, production, or a user's own) that point at a model's versions, moved by CAS.

A model's aliases live in ``<model store>/<name>/aliases.json``, replaced whole (an atomic rename in a folder, one
PUT conditional on the ETag read in a bucket); every move is added to the audit log beside it, which is never
rewritten (``audit.jsonl`` in a folder, one object per move under ``audit/`` in a bucket). A move states the version
it expects the alias to name (compare-and-swap) and runs under the model's registry lock, so of two moves at once
exactly one wins and the other is refused naming what it found. The state file carries the sequence number and
record of its last move: a writer that died between replacing it and logging the move is caught up by the next
move, so the log never misses a move.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import re
import socket
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from conveyor.events import emit_alias_moved
from conveyor.registry.lock import registry_lock
from conveyor.registry.storage import ModelStore, Tag
from conveyor.registry.store import RegisteredVersion, StoreRef, verify_version, version_dirs

ALIASES_FILE = "aliases.json"
AUDIT_LOG = "audit"
# The audit log in a folder store (a bucket keeps one object per move under audit/).
AUDIT_FILE = f"{AUDIT_LOG}.jsonl"
# The environments of a release, in the order a version moves through them.
ENVIRONMENTS = ("dev", "staging", "production")
# Who moves a protected alias: staging only through the gate, production only through delivery (or by force).
PROTECTED = {"staging": "promote", "production": "deliver"}
MoveKind = Literal["promoted", "rolled_back"]
_ALIAS_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_VERSION_LIKE = re.compile(r"^v?\d+$")
_REFERENCE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)(?:@(?P<alias>[^:@]+)|:(?P<version>[^:@]+))?$")
_LOG = logging.getLogger("conveyor.registry")


class AliasError(ValueError):
    """An alias move that was refused; the message is the sentence a user sees, and nothing moved."""


class AliasConflictError(AliasError):
    """The alias no longer names the version the mover expected (another move won)."""


class AliasMove(BaseModel):
    """One line of a model's audit log: an alias moved from one version to another, by whom and why."""

    sequence: int = Field(description="The move's number in this model's log, from 1.")
    model: str
    alias: str
    from_version: int | None = Field(description="The version the alias named before; empty: it was new.")
    to_version: int
    at: dt.datetime
    by: str = Field(description="The flow run (flow-run/<id>) or user (user@host) that moved it.")
    via: str = Field(description="What moved it: refit, promote, deliver, rollback, or a user's command.")
    reason: str
    evidence_sha256: str | None = Field(None, description="SHA-256 of the gate's verdict (gate.json) it rests on.")
    forced: bool = False
    kind: MoveKind = "promoted"


class _AliasState(BaseModel):
    """The alias file: where each alias points, and the move that made it so (to catch the log up)."""

    sequence: int = 0
    aliases: dict[str, int] = Field(default_factory=dict)
    last_move: AliasMove | None = None


def check_alias_name(alias: str) -> str:
    """The alias itself, or AliasError when it is not a usable alias name (a version number is not)."""
    if _VERSION_LIKE.match(alias):
        raise AliasError(f"{alias!r} looks like a version number; an alias needs a name such as staging.")
    if not _ALIAS_NAME.match(alias):
        raise AliasError(
            f"{alias!r} is not an alias name: use lowercase letters, digits, dashes or underscores, from a letter."
        )
    return alias


def current_actor() -> str:
    """Who is moving an alias: this flow run when inside one, else the user at this host."""
    from prefect.runtime import flow_run

    if run_id := flow_run.id:
        return f"flow-run/{run_id}"
    return f"{getpass.getuser()}@{socket.gethostname()}"


def _read_state(store: ModelStore, name: str) -> tuple[_AliasState, Tag | None]:
    """The alias state, and the tag to replace it by compare-and-swap (None: there is no state yet)."""
    found = store.read(f"{name}/{ALIASES_FILE}")
    if found is None:
        return _AliasState(), None
    try:
        return _AliasState.model_validate_json(found[0]), found[1]
    except ValidationError as error:
        where = store.url_of(f"{name}/{ALIASES_FILE}")
        raise AliasError(
            f"{where} is damaged and cannot be read ({error.errors()[0]['msg']}); nothing moved."
        ) from None


def read_aliases(model_store: StoreRef, name: str) -> dict[str, int]:
    """Each alias of a model and the version it names."""
    return dict(sorted(_read_state(ModelStore.at(model_store), name)[0].aliases.items()))


def read_audit(model_store: StoreRef, name: str) -> list[AliasMove]:
    """Every alias move of a model, oldest first; a record a crash left torn is skipped with a warning."""
    moves = []
    for where, record in ModelStore.at(model_store).records(f"{name}/{AUDIT_LOG}"):
        try:
            moves.append(AliasMove.model_validate_json(record))
        except ValidationError:
            _LOG.warning("%s is not a move record (torn by a crash?); it is skipped.", where)
    return moves


def _log(store: ModelStore, move: AliasMove) -> None:
    store.append(f"{move.model}/{AUDIT_LOG}", move.sequence, move.model_dump_json().encode())


def _catch_up_log(store: ModelStore, name: str, state: _AliasState) -> None:
    """Log the state's last move if a writer died after replacing the state and before logging the move."""
    if state.last_move is None:
        return
    logged = read_audit(store, name)
    if not logged or logged[-1].sequence < state.last_move.sequence:
        _log(store, state.last_move)


def _registered(store: ModelStore, name: str, version: int) -> RegisteredVersion:
    versions = version_dirs(store, name)
    if not versions:
        raise AliasError(f"No model named {name} is registered in {store}.")
    if version not in versions:
        known = ", ".join(f"v{n}" for n in versions)
        raise AliasError(f"{name} has no version {version} (registered: {known}).")
    return verify_version(store, versions[version])


def _conflict(name: str, alias: str, found: int | None, expected: int | None) -> AliasConflictError:
    named = f"v{found}" if found is not None else "no version"
    wanted = f"v{expected}" if expected is not None else "no version"
    return AliasConflictError(
        f"{alias} of {name} names {named}, not {wanted} as expected (another move came first); nothing moved."
    )


def _check_authority(alias: str, via: str, forced: bool, reason: str) -> None:
    if forced and not reason.strip():
        raise AliasError(f"A forced move of {alias} needs a reason (--reason); nothing moved.")
    owner = PROTECTED.get(alias)
    if owner and not forced and via not in (owner, "rollback"):
        raise AliasError(f"{alias} is protected: it moves only through the {owner} flow, or with --force and a reason.")


def move_alias(
    model_store: StoreRef,
    name: str,
    alias: str,
    version: int,
    expected: int | None,
    *,
    via: str,
    reason: str,
    evidence_sha256: str | None = None,
    forced: bool = False,
    kind: MoveKind = "promoted",
) -> AliasMove | None:
    """Point ``alias`` at ``version`` if it still names ``expected`` (None: no version yet): atomic and audited.

    Returns the move, or None when the alias already names the version (nothing to do, nothing logged). Raises
    AliasConflictError naming the version found when another move came first, AliasError for any other refusal.
    """
    store = ModelStore.at(model_store)
    check_alias_name(alias)
    _check_authority(alias, via, forced, reason)
    _registered(store, name, version)  # every file checked against its hash before anything points at it
    with registry_lock(name):
        state, tag = _read_state(store, name)
        _catch_up_log(store, name, state)
        found = state.aliases.get(alias)
        if found == version:
            return None
        if found != expected:
            raise _conflict(name, alias, found, expected)
        move = AliasMove(
            sequence=state.sequence + 1,
            model=name,
            alias=alias,
            from_version=found,
            to_version=version,
            at=dt.datetime.now(dt.UTC),
            by=current_actor(),
            via=via,
            reason=reason,
            evidence_sha256=evidence_sha256,
            forced=forced,
            kind=kind,
        )
        moved = _AliasState(sequence=move.sequence, aliases={**state.aliases, alias: version}, last_move=move)
        if not store.replace(f"{name}/{ALIASES_FILE}", moved.model_dump_json(indent=2).encode(), tag):
            # Changed since it was read, under the lock: a writer that bypassed it. Its state stands, ours is refused.
            raise _conflict(name, alias, _read_state(store, name)[0].aliases.get(alias), expected)
        _log(store, move)
    _LOG.info("%s@%s: v%s -> v%d (%s, %s)", name, alias, found, version, via, reason)
    emit_alias_moved(move.model_dump(mode="json"))
    return move


def previous_version(model_store: StoreRef, name: str, alias: str) -> tuple[int, int]:
    """The version an alias names now and the one before it, its rolled-back moves undone; AliasError if none.

    The alias's history is a stack: a promotion pushes a version, a rollback pops one. So after 1 → 2 → 3, two
    rollbacks lead to 2 and then 1, not back and forth between 3 and 2.
    """
    current = read_aliases(model_store, name).get(alias)
    if current is None:
        raise AliasError(f"{name} has no alias {alias}; nothing to roll back.")
    history: list[int] = []
    for move in (m for m in read_audit(model_store, name) if m.alias == alias):
        if move.kind == "rolled_back":
            history = history[:-1]
        else:
            history.append(move.to_version)
    if len(history) < 2 or history[-1] != current:
        raise AliasError(f"{alias} of {name} has named only v{current}; there is no earlier version to roll back to.")
    return current, history[-2]


def rollback_alias(model_store: StoreRef, name: str, alias: str, reason: str) -> AliasMove:
    """Point an alias back at the version it named before its last move (CAS on the current one), audited."""
    current, previous = previous_version(model_store, name, alias)
    move = move_alias(model_store, name, alias, previous, current, via="rollback", reason=reason, kind="rolled_back")
    assert move is not None  # previous differs from current: a move was made or refused
    return move


def resolve_reference(model_store: StoreRef, reference: str) -> RegisteredVersion:
    """The version a reference names: ``NAME`` (newest), ``NAME@ALIAS`` or ``NAME:VERSION``; files verified."""
    store = ModelStore.at(model_store)
    match = _REFERENCE.match(reference)
    if not match:
        raise AliasError(f"{reference!r} is not a model reference: use NAME, NAME@ALIAS or NAME:VERSION.")
    name, alias, number = match["name"], match["alias"], match["version"]
    versions = version_dirs(store, name)
    if not versions:
        raise AliasError(f"No model named {name} is registered in {store}.")
    if alias is not None:
        target = read_aliases(store, name).get(check_alias_name(alias))
        if target is None:
            raise AliasError(f"{name} has no alias {alias}.")
        return _registered(store, name, target)
    if number is None:
        return _registered(store, name, max(versions))
    if not _VERSION_LIKE.match(number):
        raise AliasError(f"{number!r} is not a version number (write {name}:3 or {name}:v3).")
    return _registered(store, name, int(number.removeprefix("v")))
