"""Edge variants keep their accuracy, bundles refuse tampering, and latency is held to a budget."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from conveyor.data.snapshots import Snapshot, read_snapshot
from conveyor.export.edge import (
    BUNDLE_MANIFEST,
    SAMPLE_INPUTS_FILE,
    BundleVerificationError,
    EdgeAccuracyError,
    LatencyBudget,
    LatencyBudgetError,
    check_edge_accuracy,
    measure_latency,
    open_bundle,
    run_bundle,
)
from conveyor.export.onnx import OnnxModel, onnx_model, onnx_predict, onnx_session
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
    assert set(manifest["files"]) == {"model.onnx", SAMPLE_INPUTS_FILE}


def test_bundle_scores_like_its_model_in_process(bundle: tuple[Path, Path], snapshot: Snapshot) -> None:
    rows = read_snapshot(snapshot).head(500)
    expected = onnx_predict(onnx_session(bundle[0] / "model.onnx"), rows, ENCODING)
    for path in bundle:
        with open_bundle(path) as opened:
            np.testing.assert_array_equal(run_bundle(opened, rows), expected)


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
    with pytest.raises(BundleVerificationError, match=r"needs ONNX Runtime 99.0.0"):
        _open(bundle_copy)


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
