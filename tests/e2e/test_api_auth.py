"""A Prefect server started with an auth string answers nobody without it, and Conveyor's processes send it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from conveyor.settings import ConveyorSettings
from conveyor.stack import local as stack
from tests.conftest import free_port
from tests.fixtures.cli import run_cli

USER = "conveyor"


@pytest.fixture(scope="module")
def guarded(
    settings: ConveyorSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ConveyorSettings, dict[str, str]]]:
    """A second real Prefect server, started as `conveyor up` starts it with an auth string; and the CLI's env."""
    tmp_path = tmp_path_factory.mktemp("guarded")
    secret = f"{USER}:{secrets.token_urlsafe(16)}"
    port = free_port()
    guarded = settings.model_copy(
        update={
            "state_dir": tmp_path,
            "stack": settings.stack.model_copy(
                update={"server_port": port, "api_auth_string": SecretStr(secret), "startup_timeout_s": 300.0}
            ),
        }
    )
    env = {"CONVEYOR_STATE_DIR": str(tmp_path), "CONVEYOR_SERVER_PORT": str(port), "CONVEYOR_API_AUTH_STRING": secret}
    stack.start_server(guarded)
    try:
        yield guarded, env
    finally:
        stack.stop_all(guarded)


def test_without_the_auth_string_the_api_gives_nothing_away(guarded: tuple[ConveyorSettings, dict[str, str]]) -> None:
    settings, env = guarded
    secrets_filter = f"{settings.api_url}/block_documents/filter"
    assert httpx.post(secrets_filter, json={"include_secrets": True}, timeout=30).status_code == 401
    user, password = env["CONVEYOR_API_AUTH_STRING"].split(":", 1)
    allowed = httpx.post(secrets_filter, json={"include_secrets": True}, auth=(user, password), timeout=30)
    assert allowed.status_code == 200

    stranger = run_cli("status", env={**env, "CONVEYOR_API_AUTH_STRING": f"{USER}:guess"})
    assert stranger.returncode == 1
    assert "Traceback" not in stranger.stderr
    assert stranger.stderr.strip() == (
        f"Error: the Prefect API at {settings.api_url} refused the request (401 Unauthorized); "
        "set CONVEYOR_API_AUTH_STRING to the user:password its server was started with."
    )


def test_conveyor_sends_the_auth_string_it_is_given(guarded: tuple[ConveyorSettings, dict[str, str]]) -> None:
    settings, env = guarded
    result = run_cli("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["server_healthy"] is True and report["work_pools"] == {}
    # Workers and the watcher get the same client environment as the CLI.
    assert settings.prefect_env()["PREFECT_API_AUTH_STRING"] == env["CONVEYOR_API_AUTH_STRING"]
    assert env["CONVEYOR_API_AUTH_STRING"] not in result.stdout + result.stderr
