"""The reference's profile is computed once per snapshot hash, kept beside it, and read instead of its rows."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from conveyor.data.snapshots import Snapshot
from conveyor.data.synthetic import Drift, generate_telemetry
from conveyor.io.files import sha256_file
from conveyor.schema.telemetry import TELEMETRY
from conveyor.validation.check import check_batch
from conveyor.validation.report import ValidationReport
from conveyor.validation.statistics import PROFILE_SUFFIX, profile_path, reference_profile

DAY = dt.date(2026, 4, 3)


def _batch(rows: int, path: Path, drift: tuple[Drift, ...] = ()) -> Snapshot:
    path.parent.mkdir(parents=True, exist_ok=True)
    generate_telemetry(rows, DAY, drift=drift).to_parquet(path, index=False)
    return Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)


@pytest.fixture
def reference(tmp_path: Path) -> Snapshot:
    return _batch(3_000, tmp_path / "data" / "reference.parquet")


@pytest.fixture
def drifted(tmp_path: Path) -> Snapshot:
    return _batch(3_000, tmp_path / "landing" / "drifted.parquet", drift=(Drift("temperature", 8.0),))


def _psi_columns(report: ValidationReport) -> list[str]:
    return [w.column for w in report.warnings if w.statistic == "PSI"]


def test_the_first_check_keeps_the_profile_beside_the_reference_as_json(reference: Snapshot, drifted: Snapshot) -> None:
    report = check_batch(drifted, TELEMETRY, reference)
    kept = profile_path(reference)
    assert kept == Path(reference.path).with_name(f"{reference.sha256}{PROFILE_SUFFIX}")
    profile = json.loads(kept.read_text())
    assert profile["sha256"] == reference.sha256
    assert profile["rows"] == 3_000
    assert set(profile["features"]) >= {"temperature", "rpm"}
    assert report.reference_sha256 == reference.sha256
    assert _psi_columns(report) == ["temperature"]


def test_a_kept_profile_is_used_without_reading_the_reference_again(reference: Snapshot, drifted: Snapshot) -> None:
    check_batch(drifted, TELEMETRY, reference)
    kept = profile_path(reference).read_bytes()
    # Were the reference's rows read again, these bytes would fail to parse and the statistics would be lost.
    Path(reference.path).write_bytes(b"not parquet any more")
    report = check_batch(drifted, TELEMETRY, reference)
    assert report.reference_sha256 == reference.sha256
    assert _psi_columns(report) == ["temperature"]
    assert profile_path(reference).read_bytes() == kept


def test_a_profile_of_other_bytes_is_computed_again(reference: Snapshot, drifted: Snapshot) -> None:
    stale = reference_profile(reference, TELEMETRY.features.numeric).model_copy(
        update={"sha256": "0" * 64, "features": {}}
    )
    profile_path(reference).write_text(stale.model_dump_json())
    report = check_batch(drifted, TELEMETRY, reference)
    assert _psi_columns(report) == ["temperature"]
    assert json.loads(profile_path(reference).read_text())["sha256"] == reference.sha256


def test_a_torn_profile_is_computed_again(reference: Snapshot) -> None:
    profile_path(reference).write_text('{"sha256": "')
    assert reference_profile(reference, TELEMETRY.features.numeric).sha256 == reference.sha256
    assert json.loads(profile_path(reference).read_text())["sha256"] == reference.sha256


def test_a_failed_profile_write_leaves_no_partial_file_and_keeps_the_statistics(
    reference: Snapshot, drifted: Snapshot, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Path, target: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", refuse)
    report = check_batch(drifted, TELEMETRY, reference)
    assert _psi_columns(report) == ["temperature"]
    assert sorted(p.name for p in Path(reference.path).parent.iterdir()) == [Path(reference.path).name]
