"""The registry numbers versions atomically and records what each was made from."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

import conveyor.registry.register as registry
from conveyor.data.snapshots import Snapshot
from conveyor.io.files import sha256_file
from conveyor.registry.register import StagedVersion, reserve_model_version
from conveyor.registry.store import (
    MANIFEST,
    STAGING,
    DamagedVersionError,
    find_edge_bundle,
    list_versions,
    read_version,
    read_versions,
)
from tests.fixtures.disk import DiskLog
from tests.fixtures.models import CANDIDATE_NAME, FAST_TRAINING, StagedCandidate
from tests.registry.conftest import Register


def test_versions_count_up_from_one(register: Register, store: Path, recompute: None) -> None:
    assert [register("run-a").version, register("run-b").version] == [1, 2]
    assert [v.flow_run_id for v in list_versions(store, CANDIDATE_NAME)] == ["run-a", "run-b"]
    assert not any((store / CANDIDATE_NAME / STAGING).iterdir())  # staging folders became versions


def test_registering_the_same_candidate_again_is_the_same_version(register: Register, store: Path) -> None:
    first = register("run-a")
    assert register("run-b") == first
    assert [v.version for v in list_versions(store, CANDIDATE_NAME)] == [1]


def test_a_version_whose_cache_entry_is_gone_is_found_not_duplicated(
    register: Register, store: Path, candidate: StagedCandidate
) -> None:
    first = register("run-a")
    staged = reserve_model_version(store, CANDIDATE_NAME, candidate.candidate, "run-b")
    again = registry.register_model_version.fn(store, staged, candidate.candidate, candidate.bundles, "run-b")
    assert again == first


def test_manifest_records_data_params_metrics_edge_and_file_hashes(register: Register, snapshot: Snapshot) -> None:
    version = register("run-a")
    folder = Path(version.path)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["data"]["sha256"] == snapshot.sha256 == version.data_sha256
    assert manifest["family"] == version.family == "torch"
    assert manifest["onnx"]["sha256"] == version.onnx_sha256 == sha256_file(Path(version.onnx_path))
    assert manifest["params"] == FAST_TRAINING.model_dump()
    assert manifest["metrics"]["roc_auc"] == version.metrics["roc_auc"]
    assert manifest["environment"]["torch"] == torch.__version__
    assert set(manifest["onnx"]["parity"]["sets"]) == {"held-out", "known inputs", "production sample"}
    assert manifest["edge"]["gateway"]["archive_sha256"] == sha256_file(Path(version.edge_bundles["gateway"]))
    assert {"model.onnx", "weights.pt", "evaluation.png", "parity_inputs.parquet", "edge/gateway/model.onnx"} <= set(
        manifest["files"]
    )
    for name, digest in manifest["files"].items():
        assert sha256_file(folder / name) == digest
    assert "evaluation.png" in (folder / "report.md").read_text()


def test_a_version_is_on_disk_before_its_name_appears(
    register: Register, store: Path, monkeypatch: pytest.MonkeyPatch, recompute: None
) -> None:
    disk = DiskLog(monkeypatch)
    folder = Path(register("run-a").path)
    renamed = disk.renamed_at(folder)
    staging = disk.renamed_from(folder)
    # A power cut right after the rename must find every file of the version whole, not just its name.
    for path in (p for p in folder.rglob("*") if p.is_file()):
        assert any(at < renamed for at in disk.synced_at(staging / path.relative_to(folder))), path
    assert any(at > renamed for at in disk.synced_at(store / CANDIDATE_NAME)), disk.events[renamed:]


def test_a_number_claimed_meanwhile_is_never_reused(
    store: Path, candidate: StagedCandidate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reserve(run_id: str) -> StagedVersion:
        return reserve_model_version.fn(store, CANDIDATE_NAME, candidate.candidate, run_id)

    first, second = reserve("run-a"), reserve("run-b")
    # A third run that looked before the others claimed their numbers must still get a fresh one.
    monkeypatch.setattr(registry, "_highest_number", lambda *_: 0)
    third = reserve("run-c")
    assert (first.version, second.version, third.version) == (1, 2, 3)
    assert len({first.claim, second.claim, third.claim}) == 3


def test_a_run_that_failed_after_reserving_leaves_a_gap_not_a_version(
    register: Register, store: Path, candidate: StagedCandidate, recompute: None
) -> None:
    abandoned = reserve_model_version(store, CANDIDATE_NAME, candidate.candidate, "run-that-failed")
    kept = register("run-b")
    assert (abandoned.version, kept.version) == (1, 2)
    assert [v.version for v in list_versions(store, CANDIDATE_NAME)] == [2]


def test_edge_bundle_is_found_by_version_and_target(register: Register, store: Path, recompute: None) -> None:
    register("run-a")
    newest = register("run-b")
    assert find_edge_bundle(store, CANDIDATE_NAME, None, "gateway") == Path(newest.edge_bundles["gateway"])
    with pytest.raises(LookupError, match="has no version 7; registered: v1, v2"):
        find_edge_bundle.fn(store, CANDIDATE_NAME, 7, "gateway")
    with pytest.raises(LookupError, match="no bundle for target 'watch'; it has: gateway"):
        find_edge_bundle.fn(store, CANDIDATE_NAME, 1, "watch")
    with pytest.raises(LookupError, match="No version of nothing"):
        find_edge_bundle.fn(store, "nothing", None, "gateway")


def test_a_version_with_a_truncated_manifest_is_skipped_and_named(
    register: Register, store: Path, recompute: None, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = register("run-a"), register("run-b")
    manifest = Path(second.path) / MANIFEST
    manifest.write_text(manifest.read_text()[:300])  # e.g. a disk that filled up while it was copied
    with caplog.at_level(logging.WARNING, logger="conveyor.registry"):
        assert list_versions(store) == [first]
    assert f"{second.path} is damaged" in caplog.text
    assert list(read_versions(store).damaged) == [second.path]
    # The newest usable version serves the edge; asking for the damaged one names it.
    assert find_edge_bundle.fn(store, CANDIDATE_NAME, None, "gateway") == Path(first.edge_bundles["gateway"])
    with pytest.raises(DamagedVersionError, match=f"{second.path} is damaged: its manifest.json cannot be read"):
        find_edge_bundle.fn(store, CANDIDATE_NAME, 2, "gateway")


def test_a_manifest_that_lacks_what_a_version_records_is_damaged_too(
    register: Register, store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = Path(register("run-a").path)
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["metrics"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with caplog.at_level(logging.WARNING, logger="conveyor.registry"):
        assert list_versions(store) == []
    assert f"{folder} is damaged: manifest.json field metrics: Field required." in caplog.text


def test_a_manifest_written_before_versions_recorded_their_family_reads_as_torch(register: Register) -> None:
    version = register("run-a")
    folder = Path(version.path)
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["family"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert read_version(folder) == version
    assert version.family == "torch"
