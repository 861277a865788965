"""Edge variants keep their accuracy, bundles refuse tampering, and latency is held to a budget."""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from conveyor.data.snapshots import Snapshot, read_snapshot
from conveyor.export.edge import (
    BUNDLE_MANIFEST,
    SAMPLE_INPUTS_FILE,
    SIGNATURE_FILE,
    BundleVerificationError,
    EdgeAccuracyError,
    LatencyBudget,
    LatencyBudgetError,
    check_edge_accuracy,
    measure_latency,
    open_bundle,
    run_bundle,
    sign_bundle,
    trusted_public_key,
)
from conveyor.export.onnx import OnnxModel, onnx_model, onnx_predict, onnx_session
from conveyor.io.files import sha256_file
from conveyor.io.signing import public_key_of, sign
from tests.fixtures.models import ENCODING, FAST_TRAINING, GATEWAY, StagedCandidate

GENEROUS = LatencyBudget(p99_ms=1_000, min_rows_per_s=1)


def _open(path: Path) -> None:
    with open_bundle(path):
        pass


@pytest.fixture(scope="module")
def bundle(candidate: StagedCandidate) -> tuple[Path, Path]:
    """The gateway bundle's folder and tarball."""
    made = candidate.bundles[0]
    return Path(made.folder), Path(made.archive)


@pytest.fixture
def bundle_copy(bundle: tuple[Path, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle[0], tmp_path / "gateway"))


def test_int8_variant_passes_its_gate_and_is_smaller(candidate: StagedCandidate) -> None:
    (_, accuracy) = candidate.candidate.edge[0]
    assert accuracy.auc_drop <= GATEWAY.max_auc_drop
    assert accuracy.flip_rate <= GATEWAY.max_flip_rate
    assert accuracy.size_bytes_edge < accuracy.size_bytes_fp32


def test_a_damaged_variant_is_stopped_by_the_accuracy_gate(
    candidate: StagedCandidate, snapshot: Snapshot, tmp_path: Path
) -> None:
    fp32 = candidate.candidate.exported
    proto = onnx.load(fp32.path)
    weight = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight.name))
    damaged = tmp_path / "damaged.onnx"
    onnx.save_model(proto, damaged)
    with pytest.raises(EdgeAccuracyError, match=r"loses .* ROC AUC"):
        check_edge_accuracy(fp32, onnx_model(damaged), snapshot, FAST_TRAINING.holdout_fraction, GATEWAY)


def test_manifest_describes_the_bundle_completely(bundle: tuple[Path, Path]) -> None:
    with open_bundle(bundle[1]) as opened:
        manifest = opened.manifest
    assert manifest["model_version"] == 1
    assert manifest["target"]["threads"] == 1
    assert manifest["min_onnxruntime"] == "1.14.0"
    assert manifest["opset"] == 18
    assert manifest["decision_threshold"] == 0.5
    assert [i["name"] for i in manifest["inputs"]] == ["numeric", "machine_model"]
    assert manifest["inputs"][0]["valid_ranges"]["temperature"] == [-40, 150]  # the data contract's bounds
    assert set(manifest["files"]) == {"model.onnx", SAMPLE_INPUTS_FILE}


def test_bundle_scores_like_its_model_in_process(bundle: tuple[Path, Path], snapshot: Snapshot) -> None:
    rows = read_snapshot(snapshot).head(500)
    expected = onnx_predict(onnx_session(bundle[0] / "model.onnx"), rows, ENCODING)
    for path in bundle:
        with open_bundle(path) as opened:
            np.testing.assert_array_equal(run_bundle(opened, rows).probabilities, expected)


def test_a_changed_byte_in_the_model_is_refused(bundle_copy: Path) -> None:
    model = bundle_copy / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0x01
    model.write_bytes(bytes(data))
    with pytest.raises(BundleVerificationError, match=r"model.onnx is missing or does not match its SHA-256"):
        _open(bundle_copy)


def test_a_smuggled_file_is_refused(bundle_copy: Path) -> None:
    (bundle_copy / "extra.onnx").write_bytes(b"not listed")
    with pytest.raises(BundleVerificationError, match=r"does not list: extra.onnx"):
        _open(bundle_copy)


def test_a_bundle_needing_a_newer_runtime_is_refused(bundle_copy: Path) -> None:
    manifest = json.loads((bundle_copy / BUNDLE_MANIFEST).read_text())
    manifest["min_onnxruntime"] = "99.0.0"
    (bundle_copy / BUNDLE_MANIFEST).write_text(json.dumps(manifest))
    sign_bundle(bundle_copy)  # made and signed by the builder: only the runtime is wrong
    with pytest.raises(BundleVerificationError, match=r"needs ONNX Runtime 99.0.0"):
        _open(bundle_copy)


def _rewrite_manifest(folder: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """What anyone who can write a bundle can do: change its manifest and re-hash every file it lists."""
    manifest = json.loads((folder / BUNDLE_MANIFEST).read_text())
    change(manifest)
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / BUNDLE_MANIFEST).write_text(json.dumps(manifest, indent=2))


CHANGED_AFTER_SIGNING = r"^Bundle gateway failed verification: its manifest.json was changed after it was signed\.$"


def test_a_rehashed_manifest_with_a_changed_threshold_is_refused(bundle_copy: Path) -> None:
    _rewrite_manifest(bundle_copy, lambda manifest: manifest.update(decision_threshold=0.0))
    with pytest.raises(BundleVerificationError, match=CHANGED_AFTER_SIGNING):
        _open(bundle_copy)


def test_a_changed_bias_with_the_manifest_rehashed_is_refused(bundle_copy: Path) -> None:
    model = bundle_copy / "model.onnx"
    proto = onnx.load(model)
    bias = next(t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and list(t.dims) == [1])
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 100, bias.name))
    onnx.save_model(proto, model)
    _rewrite_manifest(bundle_copy, lambda manifest: None)
    with pytest.raises(BundleVerificationError, match=CHANGED_AFTER_SIGNING):
        _open(bundle_copy)


def test_a_bundle_signed_by_another_key_or_unsigned_is_refused(bundle_copy: Path) -> None:
    forger = os.urandom(32)
    manifest = (bundle_copy / BUNDLE_MANIFEST).read_bytes()
    signature = {"algorithm": "ed25519", "public_key": public_key_of(forger), "signature": sign(forger, manifest)}
    (bundle_copy / SIGNATURE_FILE).write_text(json.dumps(signature))
    with pytest.raises(BundleVerificationError, match=r"^Bundle gateway is signed by another key than the trusted one"):
        _open(bundle_copy)
    (bundle_copy / SIGNATURE_FILE).unlink()
    with pytest.raises(BundleVerificationError, match=r"^Bundle gateway is not signed: its manifest.sig is missing"):
        _open(bundle_copy)


def test_the_trusted_key_can_be_given_to_a_device_by_setting(
    bundle: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_EDGE_PUBLIC_KEY", trusted_public_key())
    _open(bundle[1])
    monkeypatch.setenv("CONVEYOR_EDGE_PUBLIC_KEY", public_key_of(os.urandom(32)))
    with pytest.raises(BundleVerificationError, match="signed by another key than the trusted one"):
        _open(bundle[1])


def test_a_bundle_is_bound_to_the_archive_hash_the_registry_recorded(bundle: tuple[Path, Path]) -> None:
    with open_bundle(bundle[1], expect_sha256=sha256_file(bundle[1])) as opened:
        assert opened.manifest["model_version"] == 1
    with pytest.raises(BundleVerificationError, match=r"^gateway.tar.gz is not the registered bundle: its SHA-256 is"):
        _open_expecting(bundle[1], "0" * 64)


def _open_expecting(path: Path, sha256: str) -> None:
    with open_bundle(path, expect_sha256=sha256):
        pass


def test_a_tampered_tarball_is_refused(bundle_copy: Path, tmp_path: Path) -> None:
    (bundle_copy / SAMPLE_INPUTS_FILE).write_bytes(b"tampered")
    archive = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(bundle_copy, arcname="gateway")
    with pytest.raises(BundleVerificationError, match=re.escape(f"{SAMPLE_INPUTS_FILE} is missing or does not match")):
        _open(archive)


def test_something_that_is_no_bundle_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BundleVerificationError, match="not a Conveyor edge bundle"):
        _open(tmp_path)
    with pytest.raises(BundleVerificationError, match="neither a bundle folder nor a bundle tarball"):
        _open(tmp_path / "notes.txt")


def test_rows_with_non_finite_or_out_of_contract_values_are_refused_and_the_rest_scored_as_if_alone(
    bundle: tuple[Path, Path], snapshot: Snapshot
) -> None:
    rows = read_snapshot(snapshot).head(2_000).reset_index(drop=True)
    bad = {3: ("temperature", np.inf), 7: ("rpm", -np.inf), 11: ("pressure", np.nan), 13: ("voltage", 1e6)}
    mixed = rows.copy()
    for row, (feature, value) in bad.items():
        mixed.loc[row, feature] = value
    with open_bundle(bundle[1]) as opened:
        scoring = run_bundle(opened, mixed)
        alone = run_bundle(opened, rows.drop(index=list(bad)))
    assert scoring.refusals() == {
        "non-finite value in temperature": 1,
        "non-finite value in rpm": 1,
        "missing value in pressure": 1,
        "voltage outside [100, 400]": 1,
    }
    assert list(np.flatnonzero(~scoring.scored)) == list(bad)
    np.testing.assert_array_equal(scoring.probabilities[scoring.scored], alone.probabilities)
    assert np.isfinite(scoring.probabilities[scoring.scored]).all()


def test_rows_missing_a_column_are_refused(bundle: tuple[Path, Path], snapshot: Snapshot) -> None:
    with open_bundle(bundle[0]) as opened, pytest.raises(ValueError, match="lacks the columns rpm"):
        run_bundle(opened, read_snapshot(snapshot).drop(columns="rpm"))


def test_latency_is_measured_with_the_targets_threads(bundle: tuple[Path, Path]) -> None:
    report = measure_latency(bundle[1], GENEROUS)
    assert report.threads == GATEWAY.threads
    assert 0 < report.p50_ms <= report.p95_ms <= report.p99_ms
    assert report.rows_per_s > 0


def test_a_target_over_budget_fails_naming_the_figures(bundle: tuple[Path, Path]) -> None:
    with pytest.raises(LatencyBudgetError, match=r"over its latency budget: p99 .* ms \(budget 1e-06 ms\)"):
        measure_latency(bundle[1], LatencyBudget(p99_ms=1e-6, min_rows_per_s=1))


def test_sample_inputs_travel_with_the_bundle(bundle: tuple[Path, Path], candidate: StagedCandidate) -> None:
    samples = pd.read_parquet(bundle[0] / SAMPLE_INPUTS_FILE)
    assert len(samples) == len(pd.read_parquet(candidate.candidate.parity.known_inputs))


def test_exported_model_record_matches_the_file(candidate: StagedCandidate) -> None:
    exported: OnnxModel = candidate.candidate.exported
    assert onnx_model(Path(exported.path)) == exported
