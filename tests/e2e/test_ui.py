"""The Prefect UI in a real browser (the system Chromium, headless): Run > Quick run on refit/default completes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright
from prefect import get_client
from prefect.client.schemas.objects import StateType

from conveyor.blocks import ConveyorStores
from conveyor.settings import ConveyorSettings
from tests.e2e.test_triggers import runs_of, wait_for
from tests.fixtures.cli import run_cli
from tests.fixtures.server import quiesce_stack

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by .ci/run; `playwright install` needs internet
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def ui_stack(stores: ConveyorStores, landed_partition: Path) -> Iterator[dict[str, object]]:
    """`conveyor up` with its cpu worker; the UI is served by the same server as the API."""
    result = run_cli("up", "--json")
    assert result.returncode == 0, result.stderr
    yield json.loads(result.stdout)
    quiesce_stack()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file(), "install the system Chromium: apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_quick_run_from_the_refit_deployment_page_completes(
    ui_stack: dict[str, object], browser: Browser, settings: ConveyorSettings
) -> None:
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("refit/default")
    before = {r.id for r in runs_of("refit/default")}

    page = browser.new_page()
    page.goto(f"{settings.ui_url}/deployments/deployment/{deployment.id}", wait_until="networkidle")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Quick run").first.click()

    [created] = wait_for(
        "a run made from the UI", lambda: [r for r in runs_of("refit/default") if r.id not in before], timeout_s=60
    )
    assert not created.auto_scheduled
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and not (created.state and created.state.is_final()):
        time.sleep(2)
        with get_client(sync_client=True) as client:
            created = client.read_flow_run(created.id)
    assert created.state_type == StateType.COMPLETED, created.state
    page.goto(f"{settings.ui_url}/runs/flow-run/{created.id}", wait_until="networkidle")
    assert page.get_by_text("Completed").first.is_visible()
    page.close()
