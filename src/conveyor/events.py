"""Conveyor's event vocabulary: every event a flow emits, its resource and payload, in one place.

Automations (deployment triggers in deployments/prefect.yaml, or your own) match on these names and
read the resource labels and payload keys below, e.g. ``{{ event.resource["conveyor.snapshot.sha256"] }}``.

| event                      | emitter     | resource id                      | labels / payload                     |
|----------------------------|-------------|----------------------------------|--------------------------------------|
| conveyor.data.landed       | watcher [1] | conveyor.partition.<sha256>      | conveyor.partition.path, .sha256;    |
|                            |             |                                  | conveyor.dataset                     |
| conveyor.validation.passed | validate    | conveyor.snapshot.<sha256>       | conveyor.snapshot.sha256, .source;   |
|                            |             |                                  | conveyor.dataset; rows               |
| conveyor.validation.failed | validate    | conveyor.snapshot.<sha256>       | as passed; summary, failed_checks    |
| conveyor.model.registered  | refit       | conveyor.model.<name>.v<version> | conveyor.model.name; version,        |
|                            |             |                                  | data_sha256, metrics                 |

[1] the flow announce-landed-partitions, run by the landing watcher (conveyor.flows.watch).

conveyor.partition.path is a local path, or a URL when the watcher polls an object store (CONVEYOR_WATCH_URL).
conveyor.dataset names the dataset spec whose partition names the file matches (<partition_prefix>YYYY-MM-DD.parquet),
so one stack serves several datasets: the triggers pass it on as the runs' `dataset` parameter.
The landing watcher (conveyor.flows.watch) announces each complete partition once; the triggers in prefect.yaml
run validate per data.landed and one refit per 300 s window of validation.passed.
"""

from __future__ import annotations

from typing import Any

from prefect.events import emit_event

DATA_LANDED = "conveyor.data.landed"
VALIDATION_PASSED = "conveyor.validation.passed"
VALIDATION_FAILED = "conveyor.validation.failed"
MODEL_REGISTERED = "conveyor.model.registered"


def emit_data_landed(path: str, sha256: str, dataset: str) -> None:
    """A complete partition of a dataset appeared in the landing folder."""
    emit_event(
        DATA_LANDED,
        resource={
            "prefect.resource.id": f"conveyor.partition.{sha256}",
            "conveyor.partition.path": path,
            "conveyor.partition.sha256": sha256,
            "conveyor.dataset": dataset,
        },
    )


def emit_validation(passed: bool, sha256: str, source: str, dataset: str, payload: dict[str, Any]) -> None:
    """A snapshot passed or failed its dataset's contract."""
    emit_event(
        VALIDATION_PASSED if passed else VALIDATION_FAILED,
        resource={
            "prefect.resource.id": f"conveyor.snapshot.{sha256}",
            "conveyor.snapshot.sha256": sha256,
            "conveyor.snapshot.source": source,
            "conveyor.dataset": dataset,
        },
        payload=payload,
    )


def emit_model_registered(name: str, version: int, data_sha256: str, metrics: dict[str, Any]) -> None:
    """A new model version was registered."""
    emit_event(
        MODEL_REGISTERED,
        resource={"prefect.resource.id": f"conveyor.model.{name}.v{version}", "conveyor.model.name": name},
        payload={"version": version, "data_sha256": data_sha256, "metrics": metrics},
    )
