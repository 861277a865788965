"""The server follows the production alias without a restart, never serves a version whose files changed, and comes
back serving production after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from conveyor.blocks import ConveyorStores
from conveyor.io.files import write_text_atomically
from conveyor.registry.aliases import ALIASES_FILE, rollback_alias
from conveyor.registry.store import RegisteredVersion
from tests.conftest import free_port
from tests.fixtures.cli import run_cli
from tests.serving.conftest import Served, json_rows, known_rows, post_rows, put_in_production, wait_until

SWITCH_BUDGET_S = 2.0


class Answer(NamedTuple):
    """One answer a client got: when (monotonic seconds), its status and the version that gave it."""

    at: float
    status: int
    version: int | None


@contextmanager
def steady_traffic(url: str, row: dict[str, Any]) -> Iterator[list[Answer]]:
    """A client thread sending batch-1 requests back to back on one keep-alive connection until the block ends."""
    answers: list[Answer] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                try:
                    reply = client.post("/v1/predict", json={"rows": [row]})
                    answers.append(Answer(time.monotonic(), reply.status_code, reply.json().get("version")))
                except httpx.HTTPError:
                    answers.append(Answer(time.monotonic(), 0, None))  # no answer at all counts as a failure

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        yield answers
    finally:
        stop.set()
        sender.join(timeout=30)


def _first_answer_from(answers: list[Answer], version: int, since: float, timeout_s: float) -> float:
    """Seconds from ``since`` to the first answer given by ``version``."""
    wait_until(
        lambda: any(a.version == version and a.at >= since for a in answers), timeout_s, f"an answer by v{version}"
    )
    return next(a.at for a in answers if a.version == version and a.at >= since) - since


def test_moving_production_and_rolling_it_back_switch_within_2_s_with_no_failed_request(
    served: Served, versions: list[RegisteredVersion], stores: ConveyorStores, model_name: str
) -> None:
    row = json_rows(known_rows(versions[0]).head(1))[0]
    with steady_traffic(served.url, row) as answers:
        wait_until(lambda: len(answers) > 20, 10, "steady traffic")
        put_in_production(stores, model_name, 2)
        promoted = time.monotonic()
        promotion_s = _first_answer_from(answers, 2, promoted, 10)
        rollback_alias(stores.model_path, model_name, "production", reason="test")
        rolled_back = time.monotonic()
        rollback_s = _first_answer_from(answers, 1, rolled_back, 10)
        wait_until(lambda: answers[-1].at > rolled_back + 0.2, 10, "more traffic after the rollback")
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:3]}"
    assert promotion_s <= SWITCH_BUDGET_S and rollback_s <= SWITCH_BUDGET_S, (promotion_s, rollback_s)
    # One client, one connection: once a version took over, the one before never answered again.
    served_by = [a.version for a in answers]
    assert [v for i, v in enumerate(served_by) if i == 0 or served_by[i - 1] != v] == [1, 2, 1]
    status = served.client.get("/status").json()
    assert status["production"]["version"] == 1 and status["last_error"] is None and status["workers"] == 1


def _point_production_unchecked(stores: ConveyorStores, name: str, version: int) -> None:
    """Point production at a version without the registry's hash check, as if its files changed after the move."""
    path = stores.model_path / name / ALIASES_FILE
    state = json.loads(path.read_text())
    state["aliases"]["production"] = version
    write_text_atomically(path, json.dumps(state))


def test_a_version_whose_files_changed_is_never_served_and_the_old_one_keeps_serving(
    served: Served,
    versions: list[RegisteredVersion],
    stores: ConveyorStores,
    model_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (Path(versions[1].path) / "model.onnx").open("ab") as model:
        model.write(b"\0")  # one byte appended after registration
    caplog.set_level("INFO", logger="conveyor.serving")
    _point_production_unchecked(stores, model_name, 2)
    wait_until(lambda: served.client.get("/status").json()["last_error"] is not None, 5, "the refusal")
    time.sleep(5 * served.server.settings.serving_poll_seconds)  # polls go on; the refused version is not retried
    status = served.client.get("/status").json()
    assert status["production"]["version"] == 1 and status["last_error"]["version"] == 2
    sentence = f"{model_name} v2 is damaged: model.onnx does not hold the bytes its manifest records. It is not served."
    assert status["last_error"]["error"] == sentence
    assert [r.getMessage() for r in caplog.records if r.name == "conveyor.serving"] == [sentence]
    assert served.client.get("/readyz").status_code == 200
    answer = post_rows(served, json_rows(known_rows(versions[0]).head(1)))
    assert answer.status_code == 200 and answer.json()["version"] == 1


def _serve(name: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`conveyor serve` as a process of its own, as a user starts it."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "conveyor"), "serve", "--model", name, "--port", str(port)],
            env={**os.environ},
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _version_served(url: str) -> int | None:
    try:
        reply = httpx.get(f"{url}/readyz", timeout=2)
    except httpx.HTTPError:
        return None
    return int(reply.json()["version"]) if reply.status_code == 200 else None


def test_a_killed_server_started_again_serves_production(
    versions: list[RegisteredVersion], stores: ConveyorStores, model_name: str, tmp_path: Path
) -> None:
    put_in_production(stores, model_name, 1)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    first = _serve(model_name, port, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: _version_served(url) == 1, 120, f"readiness of `conveyor serve` (log: {log})")
        put_in_production(stores, model_name, 2)
        wait_until(lambda: _version_served(url) == 2, SWITCH_BUDGET_S, "the switch to v2")
        taken = run_cli("serve", "--model", model_name, "--port", str(port))
        assert taken.returncode == 1 and taken.stderr.count("\n") == 1
        assert f"Error: The model server cannot listen on 127.0.0.1:{port} (Address already in use)" in taken.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        second = _serve(model_name, port, log)
        wait_until(lambda: _version_served(url) == 2, 120, f"readiness after the restart (log: {log})")
        answer = httpx.post(f"{url}/v1/predict", json={"rows": json_rows(known_rows(versions[1]).head(1))})
        assert answer.status_code == 200 and answer.json()["version"] == 2
        second.send_signal(signal.SIGTERM)  # a graceful stop; uvicorn ends by re-raising the signal it caught
        assert second.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Finished server process" in log.read_text()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
