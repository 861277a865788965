"""POST /v1/predict answers what ONNX Runtime computes, and refuses what the model cannot score, never with a 500."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conveyor.blocks import ConveyorStores
from conveyor.export.onnx import UNSEEN_CATEGORY, onnx_predict, onnx_session
from conveyor.registry.store import RegisteredVersion
from tests.fixtures.models import ENCODING, StagedCandidate, register_candidate
from tests.serving.conftest import (
    Production,
    StartServer,
    json_rows,
    known_rows,
    post_rows,
    put_in_production,
    ready,
    wait_until,
)


def _row(version: RegisteredVersion, **changes: Any) -> dict[str, Any]:
    return {**json_rows(known_rows(version).head(1))[0], **changes}


def test_predictions_equal_onnx_runtime_in_process(production: Production) -> None:
    served, (in_production, _) = production
    frame = known_rows(in_production)
    assert (frame["machine_model"] == UNSEEN_CATEGORY).any()  # an unseen category is scored, not refused
    session = onnx_session(Path(in_production.onnx_path), threads=1)
    for rows in (frame.head(1), frame):  # batch 1, and every known input in one batch
        answer = served.client.post("/v1/predict", json={"rows": json_rows(rows)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"] == in_production.name and body["version"] == 1 and body["alias"] == "production"
        assert answer.headers["X-Model-Version"] == "1"
        expected = onnx_predict(session, rows, ENCODING)
        np.testing.assert_array_equal(np.asarray(body["predictions"], dtype=np.float32), expected)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"voltage": None, "drop": "voltage"}, "voltage", "missing column voltage"),
        ({"operator": "alice"}, "operator", "unexpected column operator"),
        ({"temperature": "hot"}, "temperature", "temperature must be a number, not a string"),
        ({"temperature": "21.5"}, "temperature", "temperature must be a number, not a string"),
        ({"rpm": True}, "rpm", "rpm must be a number, not a boolean"),
        ({"pressure": [1.0]}, "pressure", "pressure must be a number, not an array"),
        ({"vibration": math.nan}, "vibration", "missing value in vibration"),
        ({"vibration": None}, "vibration", "missing value in vibration"),
        ({"temperature": math.inf}, "temperature", "non-finite value in temperature"),
        ({"pressure": -math.inf}, "pressure", "non-finite value in pressure"),
        ({"temperature": 151.0}, "temperature", "temperature outside [-40, 150]"),
        ({"age_days": 10**400}, "age_days", "non-finite value in age_days"),
        ({"age_days": 12.5}, "age_days", "age_days takes whole numbers only"),
        ({"machine_model": 3}, "machine_model", "machine_model must be a string, not a number"),
        ({"machine_model": None}, "machine_model", "missing value in machine_model"),
    ],
)
def test_a_row_the_model_cannot_score_is_422_naming_its_row_and_field(
    production: Production, change: dict[str, Any], field: str, words: str
) -> None:
    served, (in_production, _) = production
    bad = _row(in_production, **{k: v for k, v in change.items() if k != "drop"})
    if "drop" in change:
        del bad[change["drop"]]
    good = _row(in_production)
    answer = post_rows(served, [good, good, bad])
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["error"].startswith("1 of 3 rows cannot be scored") and words in body["error"]
    (problem,) = body["problems"]
    assert problem["row"] == 2 and problem["field"] == field and words in problem["problem"]


def test_every_bad_row_is_named_and_none_is_scored(production: Production) -> None:
    served, (in_production, _) = production
    rows = [_row(in_production, temperature=-41.0), _row(in_production), _row(in_production, rpm="fast")]
    body = served.client.post("/v1/predict", json={"rows": rows}).json()
    assert [(p["row"], p["field"]) for p in body["problems"]] == [(0, "temperature"), (2, "rpm")]
    assert "predictions" not in body


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b'{"rows": [', 400, "not JSON"),
        (b"\xff\xfe not text", 400, "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, 400, "not JSON"),
        (b"", 400, "not JSON"),
        (b"[]", 422, "Input should be a valid dictionary"),
        (b'{"rows": []}', 422, "rows: List should have at least 1 item"),
        (b'{"rows": [1, 2]}', 422, "rows.0: Input should be a valid dictionary"),
        (b'{"rows": [{}], "model": "other"}', 422, "model: Extra inputs are not permitted"),
        (b'{"rows": [{}], "key": 7}', 422, "key: Input should be a valid string"),
    ],
)
def test_a_body_that_is_not_a_request_is_a_json_error(
    production: Production, body: bytes, status: int, words: str
) -> None:
    answer = production.served.client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]


def test_a_body_over_the_limit_is_413_by_its_length_and_by_what_arrives(
    start_server: StartServer, in_production: RegisteredVersion
) -> None:
    served = start_server(serving_max_body_bytes=4096)
    wait_until(lambda: ready(served), 30, "readiness")
    big = json.dumps({"rows": [_row(in_production)] * 100}).encode()
    declared = served.client.post("/v1/predict", content=big, headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and "limit of 4,096 bytes" in declared.json()["error"]
    chunked = served.client.post("/v1/predict", content=iter([big[:3000], big[3000:]]))  # no Content-Length
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413, chunked.text
    small = served.client.post("/v1/predict", json={"rows": [_row(in_production)]})
    assert small.status_code == 200


def test_odd_requests_never_get_a_500(production: Production) -> None:
    served, (in_production, _) = production
    row = _row(in_production)
    odd: list[dict[str, Any]] = [
        {"method": "GET", "url": "/v1/predict"},
        {"method": "POST", "url": "/v1/nothing", "json": {}},
        {"method": "POST", "url": "/v1/predict", "json": {"rows": [{**row, "machine_model": {"a": 1}}]}},
        {"method": "POST", "url": "/v1/predict", "content": json.dumps({"rows": [{**row, "rpm": -math.nan}]})},
        {"method": "POST", "url": "/v1/predict", "json": {"rows": [row], "key": "k" * 1000}},
        {"method": "POST", "url": "/v1/predict", "json": {"rows": [{"\u0000": 1}]}},
        {"method": "POST", "url": "/v1/predict", "content": '{"rows": [{"temperature": 1e999}]}'},
        {"method": "POST", "url": "/control/canary", "json": {"version": "two"}},
    ]
    for request in odd:
        answer = served.client.request(**request)
        assert 400 <= answer.status_code < 500, (request, answer.status_code, answer.text)
        assert answer.json()["error"]


def test_not_ready_before_a_production_version_exists_and_ready_after(
    start_server: StartServer, versions: list[RegisteredVersion], stores: ConveyorStores, model_name: str
) -> None:
    served = start_server()
    assert served.client.get("/livez").status_code == 200
    waiting = served.client.get("/readyz")
    assert waiting.status_code == 503 and waiting.json() == {"ready": False, "reason": "no production version yet"}
    early = served.client.post("/v1/predict", json={"rows": [_row(versions[0])]})
    assert early.status_code == 503 and "no production version yet" in early.json()["error"]
    put_in_production(stores, model_name, 2)
    wait_until(lambda: ready(served), 10, "readiness")
    assert served.client.get("/readyz").json() == {"ready": True, "version": 2}
    assert served.client.post("/v1/predict", json={"rows": [_row(versions[1])]}).json()["version"] == 2


def test_an_xgboost_version_is_served_as_the_mlp_is(
    start_server: StartServer,
    versions: list[RegisteredVersion],
    xgboost_candidate: StagedCandidate,
    stores: ConveyorStores,
    model_name: str,
) -> None:
    trees = register_candidate(xgboost_candidate, stores.model_path, model_name, "run-trees")
    put_in_production(stores, model_name, trees.version)
    served = start_server()
    wait_until(lambda: ready(served), 30, "readiness")
    frame = known_rows(trees)
    answer = post_rows(served, json_rows(frame))
    assert answer.status_code == 200 and answer.json()["version"] == trees.version == 3
    expected = onnx_predict(onnx_session(Path(trees.onnx_path), threads=1), frame, ENCODING)
    np.testing.assert_array_equal(np.asarray(answer.json()["predictions"], dtype=np.float32), expected)
