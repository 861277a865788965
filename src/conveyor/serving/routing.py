"""Which version answers a request: production, or a canary for its share of callers, stable by the caller's key.

A request's key (a machine id, a user) is hashed with the canary's version number to a point in [0, 100); the
request goes to the canary when the point lies below the canary's weight. So one caller sticks to one version for the
whole canary, raising the weight only adds callers to the canary (none leaves it), and each canary draws its own
callers. A request without a key draws its point at random.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import random
from typing import Literal

from conveyor.serving.versions import LoadedVersion

CanaryMode = Literal["split", "shadow"]
PRODUCTION = "production"
CANARY = "canary"
# The alias under which a shadowed request's second scoring is counted (its answer is thrown away).
SHADOW = "shadow"
_POINTS = 2**64


class NotReadyError(RuntimeError):
    """No production version is loaded yet; the message says why."""


@dataclasses.dataclass(frozen=True)
class Canary:
    """A candidate version beside production: its share of traffic in percent, and whether it answers or shadows."""

    version: LoadedVersion
    weight: float
    mode: CanaryMode
    opened_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class Route:
    """The version that answers a request, under which alias, and the version it is mirrored to (shadow), if any."""

    answer: LoadedVersion
    alias: str
    mirror: LoadedVersion | None = None


def canary_point(key: str, version: int) -> float:
    """Where a caller falls in [0, 100) for a canary version: the same key always falls in the same place."""
    digest = hashlib.blake2b(f"{version}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest) * 100 / _POINTS


@dataclasses.dataclass(frozen=True)
class Routing:
    """What the server serves now: production and the canary.

    It is replaced whole, never changed in place: a request that read it keeps one consistent view, and the sessions
    in it, to its end.
    """

    production: LoadedVersion | None = None
    canary: Canary | None = None

    def route(self, key: str | None) -> Route:
        """The route of a request with this key (None: drawn at random); NotReadyError before any production."""
        if self.production is None:
            raise NotReadyError("no production version yet")
        canary = self.canary
        if canary is None or not canary.weight:
            return Route(self.production, PRODUCTION)
        point = random.random() * 100 if key is None else canary_point(key, canary.version.number)
        if point >= canary.weight:
            return Route(self.production, PRODUCTION)
        if canary.mode == "shadow":
            return Route(self.production, PRODUCTION, mirror=canary.version)
        return Route(canary.version, CANARY)
