"""The registry numbers versions atomically and records what each was made from."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import tasks.registry as registry
from tasks.data import Snapshot
from tasks.evaluation import Evaluation, evaluate_model
from tasks.export import OnnxModel, ParityReport, check_onnx_parity, export_onnx
from tasks.files import sha256_file
from tasks.registry import MANIFEST, RegisteredVersion, list_versions, register_model_version
from tasks.training import TrainedModel
from tests.conftest import FAST_TRAINING

NAME = "registry-test"


@pytest.fixture(scope="module")
def candidate(
    trained: TrainedModel, snapshot: Snapshot, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Evaluation, OnnxModel, ParityReport]:
    """Everything a run stages before registering, made once."""
    folder = tmp_path_factory.mktemp("candidate")
    shutil.copy(trained.weights_path, folder / "weights.pt")
    evaluation = evaluate_model(trained, snapshot, FAST_TRAINING.holdout_fraction, folder)
    exported = export_onnx(trained, folder, {"model_name": NAME})
    parity = check_onnx_parity(exported, trained, snapshot, FAST_TRAINING.holdout_fraction, 1e-5)
    return folder, evaluation, exported, parity


@pytest.fixture
def register(candidate, trained: TrainedModel, snapshot: Snapshot, tmp_path: Path):
    """Register a copy of the candidate into a fresh model store, as a run would."""
    folder, evaluation, exported, parity = candidate
    store = tmp_path / "models"

    def _register(run_id: str) -> RegisteredVersion:
        staging = store / NAME / registry.STAGING / run_id
        shutil.copytree(folder, staging)
        return register_model_version(
            staging, NAME, snapshot, FAST_TRAINING, trained, evaluation, exported, parity, run_id
        )

    return store, _register


def test_versions_count_up_from_one(register) -> None:
    store, _register = register
    assert [_register("run-a").version, _register("run-b").version] == [1, 2]
    assert [v.flow_run_id for v in list_versions(store, NAME)] == ["run-a", "run-b"]
    assert not any((store / NAME / registry.STAGING).iterdir())  # staging areas became versions


def test_manifest_records_data_params_metrics_and_file_hashes(register, snapshot: Snapshot) -> None:
    _, _register = register
    version = _register("run-a")
    folder = Path(version.path)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["data"]["sha256"] == snapshot.sha256 == version.data_sha256
    assert manifest["params"] == FAST_TRAINING.model_dump()
    assert manifest["metrics"]["roc_auc"] == version.metrics["roc_auc"]
    assert manifest["environment"]["torch"] == torch.__version__
    assert {"model.onnx", "weights.pt", "evaluation.png"} <= set(manifest["files"])
    for name, digest in manifest["files"].items():
        assert sha256_file(folder / name) == digest
    assert "evaluation.png" in (folder / "report.md").read_text()


def test_a_number_taken_meanwhile_is_never_overwritten(register, monkeypatch: pytest.MonkeyPatch) -> None:
    store, _register = register
    first, second = _register("run-a"), _register("run-b")
    # Another run registered v1 and v2 after this one looked: it must move on to v3, not replace them.
    monkeypatch.setattr(registry, "version_dirs", lambda *_: {})
    third = _register("run-c")
    monkeypatch.undo()
    assert third.version == 3
    assert [v.flow_run_id for v in list_versions(store, NAME)] == ["run-a", "run-b", "run-c"]
    assert (first.version, second.version) == (1, 2)
