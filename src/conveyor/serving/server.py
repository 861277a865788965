"""One model's served versions: production follows the registry's alias, a canary follows the control API.

Each change is one reference assignment of a new ``Routing``. Loading a version (hashes, session, warm-up) runs in a
worker thread while the versions already loaded go on answering; a request in flight keeps the routing, and so the
session, it started with. A version that cannot be served is never swapped in: what was served goes on being served,
and the refusal is logged in one sentence and shown in /status. A refused production version is not tried again until
the alias names another one (versions are immutable) or the server restarts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from conveyor.registry.aliases import read_aliases
from conveyor.registry.store import StoreRef
from conveyor.serving.metrics import ServingMetrics
from conveyor.serving.routing import PRODUCTION, Canary, CanaryMode, NotReadyError, Routing
from conveyor.serving.signature import InvalidRowsError, Problem, model_inputs
from conveyor.serving.versions import LoadedVersion, VersionUnavailableError, load_version
from conveyor.settings import ServingSettings

# uvicorn runs one worker process: its metrics are one registry, and a control call reaches the only copy of the
# routing. More processes would each follow the alias alone and each keep their own canary.
WORKERS = 1
_LOG = logging.getLogger("conveyor.serving")


class CanaryConflictError(ValueError):
    """A canary that cannot be opened as asked (the version is production already)."""


class InjectedFaultError(RuntimeError):
    """TESTS ONLY: an answer of the canary version replaced by a failure (CONVEYOR_SERVING_FAULT_RATE)."""


class LoadFailure(BaseModel):
    """The last version that could not be served, and why."""

    version: int | None = Field(description="The version refused; empty: the aliases could not be read.")
    at: dt.datetime
    error: str


class ServedVersion(BaseModel):
    """A loaded version as /status shows it."""

    version: int
    loaded_at: dt.datetime


class CanaryStatus(ServedVersion):
    """The open canary as /status shows it."""

    weight: float = Field(description="Share of traffic in percent: answered by it (split) or mirrored to it.")
    mode: CanaryMode
    opened_at: dt.datetime


class ServerStatus(BaseModel):
    """What /status answers: the versions served, the canary, and the last version that could not be served."""

    model: str
    ready: bool
    reason: str | None = Field(description="Why the server is not ready; empty when it is.")
    production: ServedVersion | None
    canary: CanaryStatus | None
    loading: int | None = Field(description="The production version being loaded now, if any.")
    last_error: LoadFailure | None
    workers: int = Field(WORKERS, description="uvicorn worker processes: always one (metrics are per process).")
    poll_seconds: float
    fault_rate: float = Field(description="TESTS ONLY: share of canary answers replaced by a 503.")
    started_at: dt.datetime


class ModelServer:
    """The state of one model's server: what it serves, how it follows the registry, and its metrics."""

    def __init__(self, model_store: StoreRef, name: str, settings: ServingSettings) -> None:
        self.model_store = model_store
        self.name = name
        self.settings = settings
        self.routing = Routing()
        self.metrics = ServingMetrics()
        self.last_error: LoadFailure | None = None
        self.loading: int | None = None
        self.started_at = dt.datetime.now(dt.UTC)
        self._refused: LoadFailure | None = None  # the production version that could not be served, and why
        self._poll_error: str | None = None
        self._control = asyncio.Lock()

    def not_ready_reason(self) -> str:
        """Why no production version is served yet."""
        if self.loading is not None:
            return f"loading production v{self.loading}"
        if self._refused is not None:
            return f"production v{self._refused.version} cannot be served: {self._refused.error}"
        return "no production version yet"

    def status(self) -> ServerStatus:
        """The server as /status shows it."""
        routing = self.routing
        production, canary = routing.production, routing.canary
        return ServerStatus(
            model=self.name,
            ready=production is not None,
            reason=None if production else self.not_ready_reason(),
            production=ServedVersion(version=production.number, loaded_at=production.loaded_at) if production else None,
            canary=CanaryStatus(
                version=canary.version.number,
                loaded_at=canary.version.loaded_at,
                weight=canary.weight,
                mode=canary.mode,
                opened_at=canary.opened_at,
            )
            if canary
            else None,
            loading=self.loading,
            last_error=self.last_error,
            poll_seconds=self.settings.serving_poll_seconds,
            fault_rate=self.settings.serving_fault_rate,
            started_at=self.started_at,
        )

    async def _load(self, number: int) -> LoadedVersion:
        """A version ready to serve, loaded in a worker thread; a refusal is logged and kept for /status."""
        try:
            return await asyncio.to_thread(
                load_version, self.model_store, self.name, number, self.settings.serving_threads
            )
        except VersionUnavailableError as error:
            self._failed(number, str(error))
            raise

    def _failed(self, number: int | None, sentence: str) -> None:
        self.last_error = LoadFailure(version=number, at=dt.datetime.now(dt.UTC), error=sentence)
        _LOG.error("%s", sentence)

    def _swap(self, routing: Routing) -> None:
        """Serve ``routing`` from the next request on (one reference assignment), and show it in the metrics."""
        self.routing = routing
        self.metrics.production.set(routing.production.number if routing.production else 0)
        self.metrics.canary.clear()
        if routing.canary:
            canary = routing.canary
            self.metrics.canary.labels(str(canary.version.number), canary.mode).set(canary.weight)

    async def follow_production(self) -> None:
        """Follow the production alias until cancelled, reading it every ``serving_poll_seconds``."""
        while True:
            try:
                await self.sync_production()
                self._poll_error = None
            except Exception as error:  # an unreadable alias file or store must not stop the server; retried next poll
                sentence = f"The aliases of {self.name} could not be read ({error}); serving what was loaded."
                if sentence != self._poll_error:  # said once, not every poll
                    self._failed(None, sentence)
                self._poll_error = sentence
            await asyncio.sleep(self.settings.serving_poll_seconds)

    async def sync_production(self) -> None:
        """Serve the version the production alias names now, once it is verified and warmed, if it is a new one."""
        target = read_aliases(self.model_store, self.name).get(PRODUCTION)
        current = self.routing.production
        refused = self._refused.version if self._refused else None
        if target is None or target == refused or (current is not None and current.number == target):
            return
        async with self._control:
            canary = self.routing.canary
            promoted = canary is not None and canary.version.number == target
            self.loading = target
            try:
                # The canary being promoted is verified and warm already: it takes over at once.
                loaded = canary.version if canary is not None and promoted else await self._load(target)
            except VersionUnavailableError:
                self._refused = self.last_error
                return
            finally:
                self.loading = None
            self._refused = None
            self._swap(Routing(production=loaded, canary=None if promoted else canary))
        was = f"v{current.number}" if current else "nothing"
        promotion = ", the canary until now" if promoted else ""
        _LOG.info("%s: production v%d is served now (was %s%s).", self.name, target, was, promotion)

    async def open_canary(self, number: int, weight: float, mode: CanaryMode) -> Canary:
        """Serve a version beside production for ``weight`` percent of requests, or re-weigh the open canary.

        NotReadyError before any production version, CanaryConflictError for the production version itself, and
        VersionUnavailableError (UnknownVersionError) for a version that cannot be served; nothing changes then.
        """
        async with self._control:
            production, current = self.routing.production, self.routing.canary
            if production is None:
                raise NotReadyError(self.not_ready_reason())
            if number == production.number:
                raise CanaryConflictError(f"{self.name} v{number} is the production version; a canary is another one.")
            same = current is not None and current.version.number == number
            loaded = current.version if current is not None and same else await self._load(number)
            opened_at = current.opened_at if current is not None and same else dt.datetime.now(dt.UTC)
            canary = Canary(version=loaded, weight=weight, mode=mode, opened_at=opened_at)
            self._swap(dataclasses.replace(self.routing, canary=canary))
        _LOG.info("%s: canary v%d at %g%% (%s).", self.name, number, weight, mode)
        return canary

    async def close_canary(self) -> Canary | None:
        """Stop serving the canary; the one closed, or None when none was open."""
        async with self._control:
            closed = self.routing.canary
            self._swap(dataclasses.replace(self.routing, canary=None))
        if closed:
            _LOG.info("%s: canary v%d closed.", self.name, closed.version.number)
        return closed

    def score(self, version: LoadedVersion, alias: str, rows: list[dict[str, Any]]) -> np.ndarray:
        """A version's probabilities for JSON rows; InvalidRowsError for rows it cannot score (none is scored then)."""
        inputs = model_inputs(rows, version.signature)
        rate = self.settings.serving_fault_rate
        if alias != PRODUCTION and rate and random.random() < rate:
            raise InjectedFaultError(f"injected fault (CONVEYOR_SERVING_FAULT_RATE={rate:g}, tests only)")
        probabilities = version.predict(inputs)
        unanswered = np.flatnonzero(~np.isfinite(probabilities))
        if len(unanswered):  # never a NaN taken for a decision, whatever the model does
            problems = [Problem(row=int(i), problem="no finite probability from the model") for i in unanswered]
            raise InvalidRowsError(problems, len(rows))
        self.metrics.observe_probabilities(str(version.number), probabilities)
        return probabilities
