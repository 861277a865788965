"""The command line's one error boundary: bad settings, a locked ledger, hostile archives, bugs — one sentence each."""

from __future__ import annotations

import importlib
import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from conveyor.cache.ledger import ledger
from tests.fixtures.cli import run_cli

# The module, not the Typer app that `conveyor.cli` exports under the same name.
cli = importlib.import_module("conveyor.cli.app")

BAD_SETTINGS = [
    ("CONVEYOR_SERVER_PORT", "abc"),
    ("CONVEYOR_SERVER_PORT", "0"),
    ("CONVEYOR_SERVER_PORT", "70000"),
    ("CONVEYOR_SERVER_HOST", ""),
    ("CONVEYOR_PREFECT_API_URL", "localhost:4200"),
    ("CONVEYOR_WORKER_POOLS", ""),
    ("CONVEYOR_WORKER_POOLS", "[]"),
    ("CONVEYOR_WORKER_POOLS", "cpu gpu"),
    ("CONVEYOR_WORKER_POLL_SECONDS", "0"),
    ("CONVEYOR_STARTUP_TIMEOUT_S", "nan"),
    ("CONVEYOR_FORCE_RECOMPUTE", "maybe"),
    ("CONVEYOR_CODE_PACKAGES", ""),
    ("CONVEYOR_CODE_PACKAGES", '["toy"'),
    ("CONVEYOR_CODE_PACKAGES", "my-package"),
    ("CONVEYOR_LEDGER_TIMEOUT_S", "-1"),
    ("CONVEYOR_STATE_DIR", ""),
    ("CONVEYOR_LANDING_DIR", " "),
    ("CONVEYOR_DATA_STORE", "gopher://host/data"),
    ("CONVEYOR_WATCH_URL", "nosuch://bucket/in"),
    ("CONVEYOR_WATCH_POLL_SECONDS", "0"),
    ("CONVEYOR_PSI_WARNING", "nan"),
    ("CONVEYOR_PSI_WARNING", "-0.1"),
    ("CONVEYOR_NULL_SHARE_WARNING", "1.5"),
    ("CONVEYOR_FUTURE_TOLERANCE_S", "-5"),
    ("CONVEYOR_LANDING_SETTLE_S", "inf"),
    ("CONVEYOR_STACK", "{not json"),
]


def assert_one_sentence(result: subprocess.CompletedProcess[str], starts: str) -> None:
    """A failed command: non-zero exit, one line on stderr that starts as expected, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"Error: {starts}"), result.stderr


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS)
def test_a_bad_setting_is_one_sentence_naming_its_variable(variable: str, value: str) -> None:
    result = run_cli("status", env={variable: value})
    assert_one_sentence(result, variable)
    assert repr(value) in result.stderr or variable == "CONVEYOR_STACK"


def test_a_malformed_auth_string_is_refused_without_being_echoed() -> None:
    result = run_cli("status", env={"CONVEYOR_API_AUTH_STRING": "only-a-secret-password"})
    assert_one_sentence(result, "CONVEYOR_API_AUTH_STRING must be user:password, both parts non-empty.")
    assert "only-a-secret-password" not in result.stderr + result.stdout


def test_a_state_folder_that_cannot_be_created_is_one_sentence(tmp_path: Path) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("not a folder")
    result = run_cli("status", env={"CONVEYOR_STATE_DIR": str(occupied)})
    assert_one_sentence(result, "CONVEYOR_STATE_DIR must be a folder Conveyor can create and write")


def test_help_is_checked_like_any_command(tmp_path: Path) -> None:
    assert_one_sentence(run_cli("--help", env={"CONVEYOR_SERVER_PORT": "http"}), "CONVEYOR_SERVER_PORT")


def test_pruning_a_ledger_another_process_holds_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVEYOR_CACHE_DIR", str(tmp_path))
    with ledger() as db:
        db.execute("BEGIN EXCLUSIVE")  # a run writing the ledger, and not letting go
        result = run_cli(
            "cache", "prune", "--older-than", "0",
            env={"CONVEYOR_CACHE_DIR": str(tmp_path), "CONVEYOR_LEDGER_TIMEOUT_S": "0.2"},
        )  # fmt: skip
        db.execute("ROLLBACK")
    assert_one_sentence(result, f"The cache ledger {tmp_path / 'ledger.sqlite'} is locked by another process")
    assert "CONVEYOR_LEDGER_TIMEOUT_S" in result.stderr


def test_a_bundle_archive_reaching_outside_its_folder_is_refused_in_one_sentence(tmp_path: Path) -> None:
    archive = tmp_path / "gateway.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member = tarfile.TarInfo("gateway/../../escaped.txt")
        payload = b"written outside the bundle"
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    rows = tmp_path / "rows.csv"
    rows.write_text("rpm\n1\n")
    result = run_cli("edge-run", str(archive), "--input", str(rows))
    assert_one_sentence(result, "gateway.tar.gz was refused: ")
    assert "outside the destination" in result.stderr


def test_an_unexpected_error_is_one_sentence_with_its_traceback_kept(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken() -> None:
        raise RuntimeError("the scheduler went away")

    monkeypatch.setattr(cli, "app", broken)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1, stderr
    log = Path(stderr.strip().rsplit("the traceback is in ", 1)[1].rstrip("."))
    assert stderr.startswith("Error: unexpected RuntimeError: the scheduler went away; the traceback is in ")
    assert "Traceback" in log.read_text() and "broken" in log.read_text()
