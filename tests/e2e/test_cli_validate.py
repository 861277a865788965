"""`conveyor validate PATH`: 0 for a valid batch, 1 for an invalid one, 2 for a file that cannot be read."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from conveyor.data.quarantine import report_key
from conveyor.data.store import DataStore
from conveyor.data.synthetic import Corruption, generate_telemetry
from conveyor.io.files import sha256_file
from conveyor.settings import ConveyorSettings
from tests.fixtures.cli import run_cli

DAY = dt.date(2026, 6, 1)


def test_valid_batch_exits_zero_and_names_its_report(tmp_path: Path) -> None:
    path = tmp_path / "good.parquet"
    generate_telemetry(960, DAY).to_parquet(path, index=False)
    result = run_cli("validate", str(path), "--json")
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["passed"] is True
    assert Path(outcome["report"], "report.md").is_file()
    assert path.is_file()  # the command never moves what it checks


def test_invalid_batch_exits_one_with_the_summary_and_report_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    generate_telemetry(960, DAY, corrupt=(Corruption.RANGE,)).to_parquet(path, index=False)
    result = run_cli("validate", str(path))
    assert result.returncode == 1
    assert "broke the telemetry contract" in result.stdout
    assert "greater_than_or_equal_to(0) on rpm" in result.stdout
    report = Path(result.stdout.split("Report: ")[1].strip())
    assert report.is_file()
    assert "Traceback" not in result.stderr


def test_unreadable_files_exit_two_in_one_sentence(tmp_path: Path) -> None:
    csv = tmp_path / "renamed.parquet"
    generate_telemetry(96, DAY).to_csv(csv)
    for target in (csv, tmp_path / "missing.parquet", tmp_path):
        result = run_cli("validate", str(target))
        assert result.returncode == 2, (target, result.stdout, result.stderr)
        assert result.stderr.startswith("Error: ") and "cannot" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_check_by_hand_keeps_one_report_per_content_outside_the_data_store(
    tmp_path: Path, settings: ConveyorSettings, data_store: DataStore
) -> None:
    path = tmp_path / "checked-twice.parquet"
    generate_telemetry(960, DAY, seed=11).to_parquet(path, index=False)
    sha256 = sha256_file(path)
    for _ in range(2):
        result = run_cli("validate", str(path))
        assert result.returncode == 0, result.stderr
    folder = settings.state_dir / "reports" / sha256
    assert result.stdout.strip().endswith(f"Report: {folder}/report.md")
    assert sorted(p.name for p in folder.iterdir()) == ["data-docs", "report.json", "report.md"]
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert not data_store.local_path(report_key(sha256)).exists()
