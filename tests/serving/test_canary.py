"""The control API delivery drives: a canary beside production, split by key or shadowed, refused when it cannot be
served; and the metrics a delivery decides on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from conveyor.blocks import ConveyorStores
from conveyor.export.onnx import onnx_predict, onnx_session
from conveyor.registry.store import RegisteredVersion
from conveyor.serving.metrics import PROBABILITY_BUCKETS
from tests.fixtures.models import ENCODING
from tests.serving.conftest import (
    Served,
    StartServer,
    json_rows,
    known_rows,
    post_rows,
    put_in_production,
    ready,
    wait_until,
)

KEYS = [f"M-{n:05d}" for n in range(400)]


def _metric(served: Served, name: str, **labels: str) -> float:
    """A sample of /metrics by name and labels (0 when absent)."""
    text = served.client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def _open(served: Served, **canary: Any) -> Any:
    return served.client.post("/control/canary", json=canary)


def _row(version: RegisteredVersion) -> list[dict[str, Any]]:
    return json_rows(known_rows(version).head(1))


def test_a_split_canary_keeps_each_key_on_one_version_and_takes_its_weight_of_keys(
    served: Served, versions: list[RegisteredVersion]
) -> None:
    opened = _open(served, version=2, weight=30, mode="split")
    assert opened.status_code == 200, opened.text
    assert opened.json()["canary"] | {"opened_at": None, "loaded_at": None} == {
        "version": 2,
        "weight": 30.0,
        "mode": "split",
        "opened_at": None,
        "loaded_at": None,
    }
    rows = _row(versions[0])
    first = {key: post_rows(served, rows, key).json()["version"] for key in KEYS}
    again = {key: post_rows(served, rows, key).json()["version"] for key in KEYS[:50]}
    assert again == {key: first[key] for key in KEYS[:50]}  # one caller, one version
    assert 0.20 <= sum(v == 2 for v in first.values()) / len(KEYS) <= 0.40
    keyless = [post_rows(served, rows).json()["version"] for _ in range(300)]
    assert 0.18 <= keyless.count(2) / len(keyless) <= 0.42
    # Raising the weight adds callers to the canary; none leaves it.
    assert _open(served, version=2, weight=60).status_code == 200
    raised = {key: post_rows(served, rows, key).json()["version"] for key in KEYS}
    assert all(raised[key] == 2 for key in KEYS if first[key] == 2)
    assert 0.50 <= sum(v == 2 for v in raised.values()) / len(KEYS) <= 0.70
    # The canary answers as v2 does in process, and says so.
    canary_key = next(key for key in KEYS if raised[key] == 2)
    answer = post_rows(served, json_rows(known_rows(versions[1])), canary_key)
    assert answer.json()["alias"] == "canary" and answer.headers["X-Model-Version"] == "2"
    expected = onnx_predict(onnx_session(Path(versions[1].onnx_path), 1), known_rows(versions[1]), ENCODING)
    np.testing.assert_array_equal(np.asarray(answer.json()["predictions"], dtype=np.float32), expected)
    assert served.client.delete("/control/canary").json() == {"closed": 2}
    assert {post_rows(served, rows, key).json()["version"] for key in KEYS[:50]} == {1}
    assert served.client.delete("/control/canary").json() == {"closed": None}


def test_a_shadow_canary_answers_from_production_and_is_counted_apart(
    served: Served, versions: list[RegisteredVersion]
) -> None:
    assert _open(served, version=2, weight=100, mode="shadow").status_code == 200
    answers = [post_rows(served, _row(versions[0]), f"key-{n}") for n in range(20)]
    assert {(a.json()["version"], a.json()["alias"]) for a in answers} == {(1, "production")}
    wait_until(
        lambda: _metric(served, "conveyor_serving_requests_total", version="2", alias="shadow") == 20, 5, "shadow"
    )
    assert _metric(served, "conveyor_serving_requests_total", version="1", alias="production") == 20
    assert _metric(served, "conveyor_serving_predicted_probability_count", version="2") == 20
    assert served.client.get("/status").json()["canary"]["mode"] == "shadow"


def test_metrics_count_requests_errors_latency_and_probabilities_per_version(
    served: Served, versions: list[RegisteredVersion]
) -> None:
    rows = json_rows(known_rows(versions[0]).head(10))
    assert post_rows(served, rows).status_code == 200
    assert post_rows(served, [{**rows[0], "rpm": "fast"}]).status_code == 422
    assert served.client.post("/v1/predict", content=b"{").status_code == 400
    production = {"version": "1", "alias": "production"}
    assert _metric(served, "conveyor_serving_requests_total", **production) == 2
    assert _metric(served, "conveyor_serving_errors_total", **production, status="422") == 1
    assert _metric(served, "conveyor_serving_errors_total", version="none", alias="none", status="400") == 1
    assert _metric(served, "conveyor_serving_latency_seconds_count", **production) == 2
    assert _metric(served, "conveyor_serving_predicted_probability_count", version="1") == 10
    buckets = [
        _metric(served, "conveyor_serving_predicted_probability_bucket", version="1", le=f"{b}")
        for b in PROBABILITY_BUCKETS
    ]
    assert buckets == sorted(buckets) and buckets[-1] == 10 and len(PROBABILITY_BUCKETS) == 20
    assert _metric(served, "conveyor_serving_production_version") == 1


def test_a_canary_that_cannot_be_served_is_refused_and_production_goes_on(
    served: Served, versions: list[RegisteredVersion]
) -> None:
    refusals: dict[int, list[dict[str, Any]]] = {
        422: [{"version": 2, "weight": 150}, {"version": 2, "weight": -1}, {"version": 2, "weight": 5, "mode": "blue"}],
        404: [{"version": 9, "weight": 5}],
        409: [{"version": 1, "weight": 5}],
    }
    for status, bodies in refusals.items():
        for body in bodies:
            answer = _open(served, **body)
            assert answer.status_code == status, (body, answer.text)
            assert answer.json()["error"]
    assert "weight: Input should be less than or equal to 100" in _open(served, version=2, weight=150).json()["error"]
    assert "has no version 9 (registered: v1, v2)" in _open(served, version=9, weight=5).json()["error"]
    with (Path(versions[1].path) / "model.onnx").open("ab") as model:
        model.write(b"\0")
    damaged = _open(served, version=2, weight=5)
    assert damaged.status_code == 409 and "model.onnx does not hold the bytes its manifest records" in damaged.text
    status = served.client.get("/status").json()
    assert status["canary"] is None and status["production"]["version"] == 1 and status["last_error"]["version"] == 2
    assert post_rows(served, _row(versions[0]), "M-00001").json()["version"] == 1


def test_the_control_api_asks_for_the_configured_token(start_server: StartServer, in_production: Any) -> None:
    token = "t" * 32
    served = start_server(serving_control_token=token)
    wait_until(lambda: ready(served), 30, "readiness")
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        refused = served.client.post("/control/canary", json={"version": 2, "weight": 5}, headers=headers)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
    assert served.client.delete("/control/canary").status_code == 401
    allowed = {"Authorization": f"Bearer {token}"}
    assert served.client.post("/control/canary", json={"version": 2, "weight": 5}, headers=allowed).status_code == 200
    assert served.client.get("/v1/nothing").status_code == 404 and served.client.get("/readyz").status_code == 200


def test_the_fault_hook_fails_its_share_of_canary_answers_only(
    start_server: StartServer, in_production: RegisteredVersion
) -> None:
    served = start_server(serving_fault_rate=0.5)
    wait_until(lambda: ready(served), 30, "readiness")
    rows = _row(in_production)
    assert {post_rows(served, rows).status_code for _ in range(50)} == {200}  # production is never failed
    assert _open(served, version=2, weight=100).status_code == 200
    statuses = [post_rows(served, rows).status_code for _ in range(200)]
    assert set(statuses) == {200, 503} and 0.35 <= statuses.count(503) / 200 <= 0.65
    failed = _metric(served, "conveyor_serving_errors_total", version="2", alias="canary", status="503")
    assert failed == statuses.count(503) and served.client.get("/status").json()["fault_rate"] == 0.5


def test_promoting_the_canary_serves_it_in_production_at_once_and_closes_the_canary(
    served: Served, stores: ConveyorStores, model_name: str, versions: list[RegisteredVersion]
) -> None:
    assert _open(served, version=2, weight=10).status_code == 200
    put_in_production(stores, model_name, 2)
    wait_until(lambda: served.client.get("/readyz").json()["version"] == 2, 2, "the promotion")
    status = served.client.get("/status").json()
    assert status["canary"] is None and status["production"]["version"] == 2
    assert {post_rows(served, _row(versions[1]), key).json()["alias"] for key in KEYS[:50]} == {"production"}
