"""The `conveyor` command line: every command listed, bad input answered in one sentence."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import socket
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conveyor.data.snapshots import read_snapshot
from conveyor.data.synthetic import generate_telemetry, write_partition
from conveyor.export.edge import trusted_public_key
from conveyor.export.onnx import onnx_predict, onnx_session
from conveyor.io.files import sha256_file
from conveyor.schema.telemetry import TELEMETRY
from tests.conftest import free_port
from tests.fixtures.cli import run_cli
from tests.fixtures.models import CANDIDATE_NAME, ENCODING, StagedCandidate, register_candidate

COMMANDS = ("generate", "up", "down", "status", "run", "demo", "models", "edge-run", "tune")


def test_help_lists_every_command_with_a_line() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_generate_writes_consecutive_days(tmp_path: Path) -> None:
    result = run_cli(
        "generate", "--rows", "500", "--day", "2026-06-01", "--days", "2", "--out", str(tmp_path), "--json"
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(result.stdout)["partitions"]
    assert [Path(p).name for p in written] == ["telemetry-2026-06-01.parquet", "telemetry-2026-06-02.parquet"]
    assert len(pd.read_parquet(written[0])) == 500


def test_bad_generator_options_are_one_sentence(tmp_path: Path) -> None:
    for args in (["--drift", "humidity:+3"], ["--corrupt", "gremlins"]):
        result = run_cli("generate", "--out", str(tmp_path), *args)
        assert result.returncode == 1
        assert result.stderr.startswith("Error: ")
        assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_port_taken_by_another_program_is_refused(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("up", env={"CONVEYOR_STATE_DIR": str(tmp_path), "CONVEYOR_SERVER_PORT": str(port)})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: Port {port} on 127.0.0.1 is already in use by another program; "
        "stop it or choose another port with CONVEYOR_SERVER_PORT."
    )
    assert not (tmp_path / "pids" / "server.pid").exists()


def test_status_without_a_server_says_how_to_start_one(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result = run_cli("status", env={"CONVEYOR_STATE_DIR": str(tmp_path), "CONVEYOR_SERVER_PORT": str(free)})
    assert result.returncode == 0
    assert "NOT REACHABLE (run `conveyor up`)" in result.stdout


def test_run_against_a_missing_server_is_one_sentence(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    result = run_cli(
        "run", "refit/default", env={"CONVEYOR_STATE_DIR": str(tmp_path), "CONVEYOR_SERVER_PORT": str(free)}
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("Error: cannot reach the Prefect API")


def test_edge_run_scores_like_onnx_runtime_in_process(candidate: StagedCandidate, tmp_path: Path) -> None:
    bundle = candidate.bundles[0]
    rows = tmp_path / "rows.parquet"
    frame = read_snapshot(candidate.candidate.snapshot).head(300)
    frame.to_parquet(rows)
    out = tmp_path / "scored.parquet"
    result = run_cli("edge-run", bundle.archive, "--input", str(rows), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == 300
    expected = onnx_predict(onnx_session(Path(bundle.folder) / "model.onnx"), frame, ENCODING)
    np.testing.assert_array_equal(pd.read_parquet(out)[TELEMETRY.prediction].to_numpy(), expected)


def _rows_file(candidate: StagedCandidate, tmp_path: Path, rows: int = 10) -> Path:
    path = tmp_path / "rows.parquet"
    read_snapshot(candidate.candidate.snapshot).head(rows).to_parquet(path)
    return path


def test_edge_run_refuses_a_rewritten_and_rehashed_manifest_in_one_sentence(
    candidate: StagedCandidate, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(candidate.bundles[0].folder, tmp_path / "gateway"))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["decision_threshold"] = 0.0  # every row would "fail"
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    archive = tmp_path / "gateway.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="gateway")
    result = run_cli("edge-run", str(archive), "--input", str(_rows_file(candidate, tmp_path)))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: Bundle gateway failed verification: its manifest.json was changed after it was signed."
    )


def test_edge_run_binds_a_tarball_to_the_registry_hash_and_needs_no_server_given_the_public_key(
    candidate: StagedCandidate, tmp_path: Path
) -> None:
    bundle = candidate.bundles[0]
    rows = _rows_file(candidate, tmp_path)
    no_server = {"CONVEYOR_SERVER_PORT": str(free_port()), "CONVEYOR_EDGE_PUBLIC_KEY": trusted_public_key()}
    honest = run_cli(
        "edge-run", bundle.archive, "--input", str(rows), "--expect-sha256", bundle.archive_sha256, env=no_server
    )
    assert honest.returncode == 0, honest.stderr
    assert honest.stdout.startswith("candidate v1 on gateway: 10 rows scored")
    other = run_cli("edge-run", bundle.archive, "--input", str(rows), "--expect-sha256", "0" * 64, env=no_server)
    assert other.returncode == 1
    assert other.stderr.strip() == (
        f"Error: gateway.tar.gz is not the registered bundle: its SHA-256 is {bundle.archive_sha256}, not {'0' * 64}."
    )
    untold = run_cli("edge-run", bundle.archive, "--input", str(rows), env={"CONVEYOR_SERVER_PORT": str(free_port())})
    assert untold.returncode == 1
    assert untold.stderr.strip() == (
        "Error: No key to verify edge bundles with: set CONVEYOR_EDGE_PUBLIC_KEY to the edge_public_key "
        "`conveyor up --json` prints."
    )


def test_edge_run_refuses_rows_with_infinite_values_and_scores_the_others(
    candidate: StagedCandidate, tmp_path: Path
) -> None:
    frame = read_snapshot(candidate.candidate.snapshot).head(2_000).reset_index(drop=True)
    frame.loc[5, "temperature"] = np.inf
    frame.loc[6, "temperature"] = -np.inf
    rows = tmp_path / "rows.parquet"
    frame.to_parquet(rows)
    out = tmp_path / "scored.parquet"
    result = run_cli("edge-run", candidate.bundles[0].archive, "--input", str(rows), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["scored"]) == (2_000, 1_998)
    assert summary["refused"] == {"non-finite value in temperature": 2}
    scored = pd.read_parquet(out)
    assert scored["refused"].notna().to_numpy().nonzero()[0].tolist() == [5, 6]
    assert scored[TELEMETRY.prediction].drop(index=[5, 6]).notna().all()
    session = onnx_session(Path(candidate.bundles[0].folder) / "model.onnx")
    expected = onnx_predict(session, frame.drop(index=[5, 6]), ENCODING)
    assert summary["predicted_positive"] == int((expected >= 0.5).sum())
    text = run_cli("edge-run", candidate.bundles[0].archive, "--input", str(rows))
    assert "; 2 rows refused: non-finite value in temperature (2)" in text.stdout


def test_edge_run_refuses_a_tampered_bundle_in_one_sentence(candidate: StagedCandidate, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(candidate.bundles[0].folder, tmp_path / "gateway"))
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\0")
    rows = tmp_path / "rows.parquet"
    read_snapshot(candidate.candidate.snapshot).head(10).to_parquet(rows)
    result = run_cli("edge-run", str(folder), "--input", str(rows))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "Error: Bundle gateway failed verification: model.onnx is missing or does not match its SHA-256."
    )


def test_default_partition_is_yesterday_and_passes_validation(tmp_path: Path) -> None:
    result = run_cli("generate", "--rows", "500", "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    (written,) = json.loads(result.stdout)["partitions"]
    assert Path(written).name == f"telemetry-{dt.date.today() - dt.timedelta(days=1)}.parquet"
    checked = run_cli("validate", written)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_tune_refuses_bad_search_values_in_one_sentence(landed_partition: Path, tmp_path: Path) -> None:
    for args, named in (
        (["--max-depth", "0"], "max_depth"),
        (["--metric", "accuracy"], "--metric"),
        (["--scheduler", "localhost:8786"], "scheduler"),
    ):
        result = run_cli("tune", str(landed_partition), *args)
        assert result.returncode == 1, result.stderr
        assert result.stderr.startswith("Error: ")
        assert named in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    missing = run_cli("tune", str(tmp_path / "nowhere.parquet"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"Error: No data file at {tmp_path / 'nowhere.parquet'}."


@pytest.mark.slow
def test_tune_prints_every_trial_and_the_best(landed_partition: Path) -> None:
    result = run_cli(
        "tune", str(landed_partition), "--rounds", "20", "--max-depth", "1", "--max-depth", "3",
        "--learning-rate", "0.3", "--workers", "2", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    tuned = json.loads(result.stdout)
    assert [t["params"]["max_depth"] for t in tuned["trials"]] == [1, 3]
    aucs = [t["metrics"]["roc_auc"] for t in tuned["trials"]]
    assert tuned["best"] == aucs.index(max(aucs))


def test_train_refuses_an_unknown_model_family_in_one_sentence(landed_partition: Path) -> None:
    result = run_cli("train", str(landed_partition), "--family", "lightgbm")
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: --family must be one of torch, xgboost; got 'lightgbm'."


@pytest.mark.slow
def test_train_with_the_xgboost_family_keeps_a_json_booster_and_its_held_out_metrics(
    landed_partition: Path, tmp_path: Path
) -> None:
    result = run_cli(
        "train", str(landed_partition), "--family", "xgboost", "--rounds", "40", "--out", str(tmp_path), "--json"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trained = json.loads(result.stdout)
    assert trained["family"] == "xgboost"
    assert trained["weights_path"] == str(tmp_path / "booster.json")
    assert json.loads((tmp_path / "booster.json").read_text())["learner"]["objective"]["name"] == "binary:logistic"
    assert trained["metrics"]["roc_auc"] > 0.9
    assert (tmp_path / "evaluation.png").is_file()


def test_a_truncated_manifest_is_named_and_everything_else_keeps_working(
    candidate: StagedCandidate, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    intact = Path(register_candidate(candidate, state / "models", CANDIDATE_NAME, "run-a").path)
    damaged = Path(shutil.copytree(intact, intact.with_name("v2")))
    manifest = damaged / "manifest.json"
    manifest.write_text(manifest.read_text()[:300])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        env = {"CONVEYOR_STATE_DIR": str(state), "CONVEYOR_SERVER_PORT": str(probe.getsockname()[1])}

    listed = run_cli("models", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith(f"{CANDIDATE_NAME} v1  ROC AUC")
    assert f"DAMAGED  {damaged} is damaged: its manifest.json cannot be read" in listed.stdout

    day = dt.date(2026, 3, 2)
    checked = run_cli("validate", str(write_partition(generate_telemetry(500, day), tmp_path / "in", day)), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "is valid: 500 rows" in checked.stdout
    assert f"{damaged} is damaged" in checked.stderr
    assert "Traceback" not in checked.stderr
