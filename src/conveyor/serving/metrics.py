"""What the model server counts for Prometheus: requests, errors, latency and predicted probabilities per version.

Requests, errors and latency are labelled by version and alias (production, canary, shadow). The server runs one
worker process, so one registry holds every count (no Prometheus multi-process mode). Each server has its own
registry, never the global one: two servers in one process (tests) count apart.
"""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Label values of a request no version answered (malformed, too large, before any production version).
NO_VERSION = "none"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROBABILITY_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 21))


class ServingMetrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        per_answer = ["version", "alias"]
        self.requests = Counter(
            "conveyor_serving_requests",
            "Prediction requests, by the version and alias that answered.",
            per_answer,
            registry=self.registry,
        )
        self.errors = Counter(
            "conveyor_serving_errors",
            "Prediction requests answered with an error, by version, alias and HTTP status.",
            [*per_answer, "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "conveyor_serving_latency_seconds",
            "Time from a prediction request's arrival to its answer, by version and alias.",
            per_answer,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.probabilities = Histogram(
            "conveyor_serving_predicted_probability",
            "Predicted probabilities, one per scored row, by version.",
            ["version"],
            buckets=PROBABILITY_BUCKETS,
            registry=self.registry,
        )
        self.production = Gauge(
            "conveyor_serving_production_version",
            "The production version served (0: none yet).",
            registry=self.registry,
        )
        self.canary = Gauge(
            "conveyor_serving_canary_weight_percent",
            "The canary's share of traffic in percent, by canary version and mode (absent: no canary).",
            ["version", "mode"],
            registry=self.registry,
        )

    def record(self, version: str, alias: str, seconds: float, status: int) -> None:
        """Count one answered prediction request."""
        self.requests.labels(version, alias).inc()
        self.latency.labels(version, alias).observe(seconds)
        if status >= 400:
            self.errors.labels(version, alias, str(status)).inc()

    def observe_probabilities(self, version: str, probabilities: np.ndarray) -> None:
        """Add a batch's predicted probabilities to its version's histogram."""
        histogram = self.probabilities.labels(version)
        for probability in probabilities.tolist():
            histogram.observe(probability)

    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format."""
        return generate_latest(self.registry)
