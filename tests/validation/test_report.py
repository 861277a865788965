"""A validation report lands whole or not at all, beside whatever its folder already holds."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

import conveyor.validation.report as reports
from conveyor.io.files import write_text_atomically
from conveyor.validation.report import ReportWriteError, ValidationReport, Violation, write_report

SHA256 = "ab" * 32


@pytest.fixture
def report(tmp_path: Path) -> ValidationReport:
    """A failing batch's verdict, with Data Docs rendered in a scratch folder."""
    docs = tmp_path / "rendered-docs"
    docs.mkdir()
    (docs / "index.html").write_text("<html>data docs</html>")
    violation = Violation(check="greater_than_or_equal_to(0)", column="rpm", failing_rows=3, examples=["-1"])
    return ValidationReport(
        snapshot_sha256=SHA256, source="telemetry.parquet", rows=10, violations=[violation], data_docs=str(docs)
    )


def _disk_full_at(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up when the report writes ``name`` (a full disk cannot be had on demand in a test)."""

    def write_until_full(target: Path, text: str) -> Path:
        if target.name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return write_text_atomically(target, text)

    monkeypatch.setattr(reports, "write_text_atomically", write_until_full)


def test_a_full_disk_leaves_no_partial_report_folder_and_is_one_sentence(
    report: ValidationReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "reports" / SHA256
    _disk_full_at("report.json", monkeypatch)
    with pytest.raises(ReportWriteError) as raised:
        write_report(report, folder)
    assert str(raised.value) == (
        f"Cannot write the validation report of Batch telemetry.parquet (abababababab) to {folder}: "
        "No space left on device."
    )
    assert list((tmp_path / "reports").iterdir()) == []  # neither the folder nor its temporary twin


def test_a_full_disk_keeps_what_the_folder_held(
    report: ValidationReport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "quarantine" / SHA256
    write_report(report, folder)
    (folder / "telemetry.parquet").write_bytes(b"the quarantined batch")
    earlier = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    _disk_full_at("report.json", monkeypatch)
    with pytest.raises(ReportWriteError):
        write_report(report.model_copy(update={"rows": 11}), folder)
    assert {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()} == earlier
    assert [p.name for p in folder.parent.iterdir()] == [SHA256]


def test_a_new_report_replaces_the_old_one_and_keeps_the_batch(report: ValidationReport, tmp_path: Path) -> None:
    folder = tmp_path / "quarantine" / SHA256
    write_report(report, folder)
    (folder / "telemetry.parquet").write_bytes(b"the quarantined batch")
    written = write_report(report.model_copy(update={"rows": 11}), folder)
    assert json.loads((folder / "report.json").read_text())["rows"] == 11
    assert (folder / "data-docs" / "index.html").is_file() and written.data_docs == str(folder / "data-docs")
    assert (folder / "telemetry.parquet").read_bytes() == b"the quarantined batch"
    assert sorted(p.name for p in folder.iterdir()) == ["data-docs", "report.json", "report.md", "telemetry.parquet"]
