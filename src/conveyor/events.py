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
| conveyor.model.registered  | refit       | conveyor.model.<name>.v<version> | conveyor.model.name,                 |
|                            |             |                                  | conveyor.dataset; version,           |
|                            |             |                                  | data_sha256, metrics                 |
| conveyor.model.promoted    | any alias   | conveyor.model.<name>.v<version> | conveyor.model.name, .alias; the     |
|                            | move [2]    |                                  | audit line (alias, from_version,     |
|                            |             |                                  | to_version, by, via, reason, ...)    |
| conveyor.model.rolled_back | rollback    | as promoted                      | as promoted                          |
| conveyor.model.rejected    | promote     | conveyor.model.<name>.v<version> | conveyor.model.name; version,        |
|                            |             |                                  | target, failed_checks,               |
|                            |             |                                  | evidence_sha256                      |

[1] the flow announce-landed-partitions, run by the landing watcher (conveyor.flows.watch).
[2] refit (dev), the promote flow's gate (staging or a free-form alias), `conveyor registry promote`; the payload is
    the move's audit line (conveyor.registry.aliases.AliasMove), so an automation can match on its alias.

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
MODEL_PROMOTED = "conveyor.model.promoted"
MODEL_ROLLED_BACK = "conveyor.model.rolled_back"
MODEL_REJECTED = "conveyor.model.rejected"


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


def emit_model_registered(name: str, version: int, dataset: str, data_sha256: str, metrics: dict[str, Any]) -> None:
    """A new model version was registered."""
    emit_event(
        MODEL_REGISTERED,
        resource=_model_resource(name, version, **{"conveyor.dataset": dataset}),
        payload={"version": version, "data_sha256": data_sha256, "metrics": metrics},
    )


def _model_resource(name: str, version: int, **labels: str) -> dict[str, str]:
    return {"prefect.resource.id": f"conveyor.model.{name}.v{version}", "conveyor.model.name": name, **labels}


def emit_alias_moved(move: dict[str, Any]) -> None:
    """An alias of a model moved (promoted, or rolled back); the payload is the move's audit line."""
    emit_event(
        MODEL_ROLLED_BACK if move["kind"] == "rolled_back" else MODEL_PROMOTED,
        resource=_model_resource(move["model"], move["to_version"], **{"conveyor.model.alias": move["alias"]}),
        payload=move,
    )


def emit_model_rejected(name: str, version: int, target: str, failed_checks: list[str], evidence: str) -> None:
    """The promotion gate refused a version: no alias moved."""
    emit_event(
        MODEL_REJECTED,
        resource=_model_resource(name, version),
        payload={"version": version, "target": target, "failed_checks": failed_checks, "evidence_sha256": evidence},
    )
