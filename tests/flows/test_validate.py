"""The validate flow keeps good batches, quarantines bad ones with their report, and tells automations the verdict."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.schemas.objects import State

import conveyor.validation.tasks as validation_tasks
from conveyor.blocks import ConveyorStores
from conveyor.data.quarantine import quarantine_folder, report_folder
from conveyor.data.snapshots import Snapshot, snapshot_key
from conveyor.data.store import DataStore
from conveyor.data.synthetic import Corruption, generate_telemetry, write_partition
from conveyor.events import VALIDATION_FAILED, VALIDATION_PASSED
from conveyor.flows.refit import refit
from conveyor.flows.validate import validate
from conveyor.io.files import sha256_file
from conveyor.models.training import TrainingParams
from conveyor.registry.store import list_versions
from conveyor.validation.check import check_batch
from tests.fixtures.server import flow_run_artifacts, wait_for_event

# Never used for training if validation does its job: a bad batch must not get that far.
_ONE_EPOCH = TrainingParams(epochs=1)


def _validate(**kwargs: object) -> State:
    state = validate(return_state=True, **kwargs)
    assert isinstance(state, State)
    return state


def _refit(**kwargs: object) -> State:
    state = refit(return_state=True, training=_ONE_EPOCH, **kwargs)
    assert isinstance(state, State)
    return state


def _registry(stores: ConveyorStores) -> list[tuple[str, int]]:
    return [(v.name, v.version) for v in list_versions(stores.model_path)]


def test_clean_partition_passes_is_kept_and_announced_with_its_report(
    landed_partition: Path, data_store: DataStore
) -> None:
    state = _validate(partition=landed_partition.name)
    assert state.is_completed(), state.message
    snapshot = state.result()
    assert isinstance(snapshot, Snapshot)
    assert snapshot.sha256 == sha256_file(landed_partition)
    assert Path(snapshot.path) == data_store.local_path(snapshot_key(snapshot.sha256))
    assert landed_partition.is_file()  # a good batch stays where it landed
    reports = report_folder(data_store, snapshot.sha256)
    assert json.loads((reports / "report.json").read_text())["violations"] == []
    assert (reports / "data-docs" / "index.html").is_file()
    artifacts = flow_run_artifacts(str(state.state_details.flow_run_id))
    assert {"validation-checks", "validation-report"} <= artifacts.keys()
    assert "Validation PASSED" in str(artifacts["validation-report"]["data"])
    event = wait_for_event(VALIDATION_PASSED, f"conveyor.snapshot.{snapshot.sha256}")
    assert event["resource"]["conveyor.snapshot.sha256"] == snapshot.sha256
    assert event["payload"]["rows"] > 0


def test_corrupt_partition_is_quarantined_and_announced_with_why(stores: ConveyorStores) -> None:
    day = dt.date(2026, 7, 7)
    landed = write_partition(generate_telemetry(3_000, day, corrupt=(Corruption.NULLS,)), stores.landing_path, day)
    digest = sha256_file(landed)
    state = _validate(partition=landed.name)
    assert state.is_failed()
    assert "not_nullable on temperature" in str(state.message)
    assert not landed.exists()
    kept = quarantine_folder(stores.quarantine_path, digest)
    assert sha256_file(kept / landed.name) == digest
    assert "not_nullable" in (kept / "report.md").read_text()
    artifacts = flow_run_artifacts(str(state.state_details.flow_run_id))
    assert "not_nullable" in str(artifacts["validation-checks"]["data"])
    event = wait_for_event(VALIDATION_FAILED, f"conveyor.snapshot.{digest}")
    assert "not_nullable on temperature" in event["payload"]["summary"]


def test_every_bad_batch_is_quarantined_and_never_trained_on(
    bad_batch: tuple[str, Path, str | None], stores: ConveyorStores, data_store: DataStore
) -> None:
    name, made, expected = bad_batch
    landed = stores.landing_path / made.name
    shutil.move(made, landed)
    digest, before = sha256_file(landed), _registry(stores)
    state = _refit(partition=landed.name)
    assert state.is_failed(), name
    verdict = "cannot be read" if expected is None else ("has no rows", "broke the telemetry contract")
    assert any(v in str(state.message) for v in ([verdict] if isinstance(verdict, str) else verdict)), state.message
    assert not landed.exists()  # the landing folder is left clean
    kept = quarantine_folder(stores.quarantine_path, digest)
    assert sha256_file(kept / landed.name) == digest  # moved, byte for byte, never deleted
    report = json.loads((kept / "report.json").read_text())
    assert expected is None or any(expected in f"{v['check']} on {v['column']}" for v in report["violations"])
    assert not data_store.local_path(snapshot_key(digest)).exists()
    assert _registry(stores) == before


def _refused_in_place(state: State, path: Path, stores: ConveyorStores, before: list[tuple[str, int]]) -> None:
    assert state.is_failed()
    assert path.exists()  # not a batch we may move: it stays exactly where it is
    assert _registry(stores) == before


@pytest.fixture
def leftovers() -> Iterator[list[Path]]:
    """Paths a test leaves in the landing area on purpose; removed after it, so no later test takes one as newest."""
    paths: list[Path] = []
    yield paths
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def test_a_directory_instead_of_a_file_is_refused_and_left_alone(stores: ConveyorStores, leftovers: list[Path]) -> None:
    folder = stores.landing_path / "telemetry-2026-08-01.parquet"
    folder.mkdir(parents=True)
    leftovers.append(folder)
    before = _registry(stores)
    state = _refit(partition=folder.name)
    _refused_in_place(state, folder, stores, before)
    assert "telemetry-2026-08-01.parquet" in str(state.message)


def test_a_path_outside_the_landing_area_is_refused_and_left_alone(
    stores: ConveyorStores, leftovers: list[Path]
) -> None:
    outside = stores.landing_path.parent / "elsewhere" / "telemetry-2026-08-02.parquet"
    outside.parent.mkdir(parents=True, exist_ok=True)
    leftovers.append(outside)
    generate_telemetry(480, dt.date(2026, 8, 2)).to_parquet(outside)
    before = _registry(stores)
    state = _refit(partition="../elsewhere/telemetry-2026-08-02.parquet")
    _refused_in_place(state, outside, stores, before)
    assert "outside the landing folder" in str(state.message)


def test_a_file_still_being_written_is_left_to_finish(stores: ConveyorStores, leftovers: list[Path]) -> None:
    growing = stores.landing_path / "telemetry-2026-08-03.parquet"
    growing.write_bytes(b"PAR1")
    leftovers.append(growing)
    done = threading.Event()

    def keep_writing() -> None:
        with growing.open("ab") as handle:
            while not done.is_set():
                handle.write(b"x" * 1024)
                handle.flush()
                time.sleep(0.05)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        before = _registry(stores)
        state = _refit(partition=growing.name)
    finally:
        done.set()
        writer.join()
    _refused_in_place(state, growing, stores, before)
    assert "still being written" in str(state.message)
    assert not quarantine_folder(stores.quarantine_path, sha256_file(growing)).exists()


def _bad(day: dt.date, folder: Path) -> Path:
    return write_partition(generate_telemetry(3_000, day, corrupt=(Corruption.NULLS,)), folder, day)


def _good(day: dt.date, folder: Path) -> Path:
    return write_partition(generate_telemetry(3_000, day, seed=11), folder, day)


@pytest.mark.parametrize("landings", [1, 2], ids=["first landing", "bytes already quarantined"])
def test_a_corrected_file_renamed_into_place_after_the_check_stays_in_the_landing_folder(
    landings: int, stores: ConveyorStores, tmp_path: Path, leftovers: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    day = dt.date(2026, 10, landings)
    landed = _bad(day, stores.landing_path)
    leftovers.append(landed)
    bad_bytes, digest = landed.read_bytes(), sha256_file(landed)
    if landings == 2:
        assert _validate(partition=landed.name).is_failed()
        landed.write_bytes(bad_bytes)  # the same bad batch lands again
    corrected = _good(day, tmp_path)
    fixed = sha256_file(corrected)

    def check_then_correct(*args: Any) -> Any:
        report = check_batch(*args)
        corrected.replace(landed)  # the producer renames its fix into place: after the read, before the move
        return report

    monkeypatch.setattr(validation_tasks, "check_batch", check_then_correct)
    state = _validate(partition=landed.name, force_recompute=True)
    assert state.is_failed()
    assert "not_nullable on temperature" in str(state.message)
    assert sha256_file(landed) == fixed  # the fix survives, to be validated on its own
    assert (quarantine_folder(stores.quarantine_path, digest) / landed.name).read_bytes() == bad_bytes


def test_a_file_swapped_in_before_the_read_is_not_judged_under_the_other_files_hash(
    stores: ConveyorStores,
    data_store: DataStore,
    tmp_path: Path,
    leftovers: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    day = dt.date(2026, 10, 3)
    landed = _bad(day, stores.landing_path)
    leftovers.append(landed)
    digest = sha256_file(landed)
    swapped = _good(day, tmp_path)

    def swap_then_check(*args: Any) -> Any:
        swapped.replace(landed)  # renamed in after the file was hashed, before its rows are read
        return check_batch(*args)

    monkeypatch.setattr(validation_tasks, "check_batch", swap_then_check)
    state = _validate(partition=landed.name)
    # The verdict and the report under the bad batch's hash are about the bad batch's bytes.
    assert state.is_failed()
    kept = quarantine_folder(stores.quarantine_path, digest)
    assert sha256_file(kept / landed.name) == digest
    assert json.loads((kept / "report.json").read_text())["snapshot_sha256"] == digest
    assert not report_folder(data_store, digest).exists()
    assert landed.is_file()  # the good file, swapped in, is left for its own run


def test_a_stored_snapshot_whose_recheck_fails_stays_in_the_data_store(
    stores: ConveyorStores, data_store: DataStore, tmp_path: Path
) -> None:
    # Kept before the contract caught this damage (or by hand): re-checking it must not break a model's lineage.
    made = _bad(dt.date(2026, 10, 4), tmp_path)
    digest = sha256_file(made)
    stored = data_store.keep_file(made, snapshot_key(digest))
    state = _validate(snapshot=digest)
    assert state.is_failed()
    assert "not_nullable on temperature" in str(state.message)
    assert sha256_file(stored) == digest  # still in the data store, byte for byte
    assert "not_nullable" in (quarantine_folder(stores.quarantine_path, digest) / "report.md").read_text()
