"""Re-running refit costs nothing when nothing changed, and recomputes exactly what an edit reaches.

Each refit runs in a fresh process on a copy of the project, as a deployment would, so that editing a helper
in the copy is what the next run sees.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conveyor.blocks import ConveyorStores
from conveyor.settings import PROJECT_DIR
from tests.fixtures.cli import run_cli
from tests.fixtures.models import StagedCandidate, register_candidate
from tests.fixtures.server import flow_run_artifacts

pytestmark = pytest.mark.slow

MODEL = "cache-spec"
HELPER_FILE = "src/conveyor/models/features.py"
HELPER = "def encode_features(frame: pd.DataFrame, encoding: FeatureEncoding) -> tuple[np.ndarray, list[np.ndarray]]:\n"
# Run by a fresh interpreter in the project copy: refit, then this run's cache decisions as JSON.
REFIT = """
import json, sys
from conveyor.flows.refit import refit
from conveyor.cache.ledger import decisions_of
from conveyor.cache.report import explain_table
from conveyor.models.training import TrainingParams

state = refit(partition=sys.argv[1], model_name=sys.argv[2], training=TrainingParams(epochs=3), return_state=True)
flow_run_id = str(state.state_details.flow_run_id)
version = state.result().version if state.is_completed() else None
print(json.dumps({"state": state.name, "flow_run_id": flow_run_id, "version": version,
                  "rows": explain_table(decisions_of(flow_run_id))}))
"""


def _refit(project: Path, partition: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", REFIT, str(partition), MODEL],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project / "src")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["state"] == "Completed", done.stderr[-3000:]
    return result


def _by_task(result: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Outcome and reason per task run name, without the '-abc' suffix Prefect adds to repeated names."""
    return {row["task run"].rsplit("-", 1)[0]: (row["cache"], row["why"]) for row in result["rows"]}


@pytest.fixture(scope="module")
def runs(
    landed_partition: Path,
    candidate: StagedCandidate,
    stores: ConveyorStores,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, Any]]:
    """Refit three times: cold, again unchanged, and after editing a helper that training reaches."""
    # A version trained on the same data already exists, so every run validates against the same reference.
    register_candidate(candidate, stores.model_path, MODEL, "earlier-run")
    project = tmp_path_factory.mktemp("project")
    shutil.copytree(PROJECT_DIR / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    cold = _refit(project, landed_partition)
    unchanged = _refit(project, landed_partition)
    helper = project / HELPER_FILE
    source = helper.read_text()
    assert HELPER in source
    # Behaviour unchanged, source changed: a comment-free statement in the helper's body.
    helper.write_text(source.replace(HELPER, HELPER + "    _ = len(frame)\n"))
    edited = _refit(project, landed_partition)
    return {"cold": cold, "unchanged": unchanged, "edited": edited}


def test_an_unchanged_rerun_reuses_every_cacheable_task(runs: dict[str, dict[str, Any]]) -> None:
    rows = runs["unchanged"]["rows"]
    cacheable = [row for row in rows if row["cache"] != "not cached"]
    assert len(cacheable) >= 10
    assert {row["cache"] for row in cacheable} == {"hit"}, cacheable
    assert runs["unchanged"]["version"] == runs["cold"]["version"]  # the same candidate is the same version


def test_only_lookups_and_side_effects_are_not_cached(runs: dict[str, dict[str, Any]]) -> None:
    uncached = {name for name, (outcome, _) in _by_task(runs["unchanged"]).items() if outcome == "not cached"}
    assert uncached == {
        "Find landed partition",
        "Check landed file",
        "Find training reference",
        "Publish validation report",
        "Keep report in data store",
        "Publish model report",
        "Report cache use",
        "Find newest landed partition",
    }


def test_editing_a_helper_training_reaches_through_another_module_recomputes_training(
    runs: dict[str, dict[str, Any]],
) -> None:
    tasks = _by_task(runs["edited"])
    assert tasks["Train model"] == ("miss", "code changed (conveyor.models.features.encode_features)")
    assert tasks["Evaluate on held-out entities"][0] == "miss"  # it predicts through the same helper


def test_validation_upstream_of_the_edit_is_reused(runs: dict[str, dict[str, Any]]) -> None:
    tasks = _by_task(runs["edited"])
    assert tasks["Validate snapshot"][0] == "hit"
    assert tasks["Snapshot partition"][0] == "hit"


def test_export_is_reused_when_retraining_gave_bit_identical_weights(runs: dict[str, dict[str, Any]]) -> None:
    # The edit changed no behaviour: training recomputed the same weights, so the export's inputs are unchanged.
    assert _by_task(runs["edited"])["Export to ONNX"][0] == "hit"


def test_a_cached_run_still_shows_its_version_and_publishes_the_table_the_cli_prints(
    runs: dict[str, dict[str, Any]],
) -> None:
    flow_run_id = runs["unchanged"]["flow_run_id"]
    artifacts = flow_run_artifacts(flow_run_id)
    assert f"{MODEL} v{runs['cold']['version']}" in artifacts["model-version"]["data"]
    table = artifacts["cache-explain"]
    explained = run_cli("cache", "explain", flow_run_id, "--json")
    assert explained.returncode == 0, explained.stderr
    assert json.loads(table["data"]) == json.loads(explained.stdout) == runs["unchanged"]["rows"]
