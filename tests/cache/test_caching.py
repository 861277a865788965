"""Tasks are cached by what they depend on: bytes not paths, code through helpers, verified before reuse."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import pickle
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.schemas.objects import State
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from conveyor.blocks import CACHE_KEY_BLOCK, load_secret_key
from conveyor.cache import cached_task, mac
from conveyor.cache.keys import code_fingerprint
from conveyor.cache.ledger import Decision, decisions_of, ledger
from conveyor.cache.prune import prune_cache
from conveyor.cache.report import explain_table
from conveyor.data.snapshots import Snapshot, snapshot_partition
from conveyor.data.store import DataStore
from conveyor.io.hashing import hash_bytes
from conveyor.models.training import train_model
from conveyor.settings import get_settings
from conveyor.validation.tasks import validate_snapshot
from tests.conftest import free_port
from tests.fixtures.cli import run_cli


@cached_task("Read slowly")
def read_slowly(path: Path, seconds: float) -> int:
    """Read a file, taking its time (long enough for someone to change the file meanwhile)."""
    time.sleep(seconds)
    return len(path.read_bytes())


@flow(name="snapshot-twice")
def snapshot_each(partitions: list[str], data_store: str, force_recompute: bool = False) -> list[State]:
    """Snapshot each file, one task run per file."""
    return [snapshot_partition(Path(p), DataStore(url=data_store), return_state=True) for p in partitions]


def _run(partitions: list[Path], store: Path, force_recompute: bool = False) -> tuple[list[State], list[Decision]]:
    state = snapshot_each([str(p) for p in partitions], str(store), force_recompute, return_state=True)
    return state.result(), decisions_of(str(state.state_details.flow_run_id))


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


def _landed(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_same_bytes_at_a_new_path_hit_and_one_changed_byte_misses_saying_data_changed(
    landing: Path, tmp_path: Path
) -> None:
    payload = os.urandom(10_000)
    first = _landed(landing, "day-1.parquet", payload)
    moved = Path(shutil.copy(first, tmp_path / "renamed.parquet"))
    changed = _landed(landing, "day-2.parquet", payload[:-1] + bytes([payload[-1] ^ 1]))
    states, decisions = _run([first, moved, changed], tmp_path / "store")
    assert [s.name for s in states] == ["Completed", "Cached", "Completed"]
    assert states[1].result() == states[0].result()  # the same snapshot, whatever the file was called
    assert [d.outcome for d in decisions] == ["miss", "hit", "miss"]
    assert decisions[2].reason == "data changed (partition)"


def test_another_store_is_a_params_change(landing: Path, tmp_path: Path) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    _run([landed], tmp_path / "one")
    states, decisions = _run([landed], tmp_path / "two")
    assert states[0].name == "Completed"
    assert decisions[0].reason == "params changed"


def test_a_deleted_result_record_is_recomputed_and_then_reused(landing: Path, tmp_path: Path) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    _, decisions = _run([landed], tmp_path / "store")
    record = get_current_settings().results.local_storage_path / str(decisions[0].key)
    record.unlink()
    states, decisions = _run([landed], tmp_path / "store")
    assert states[0].name == "Completed"
    assert decisions[0].reason == "stored result is missing; recomputing"
    assert _run([landed], tmp_path / "store")[0][0].name == "Cached"


def test_a_corrupted_result_record_is_recomputed_not_trusted(landing: Path, tmp_path: Path) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    _, decisions = _run([landed], tmp_path / "store")
    record = get_current_settings().results.local_storage_path / str(decisions[0].key)
    # Still valid JSON, so Prefect would happily read it: only the MAC catches the edit.
    record.write_text(record.read_text().replace(str(tmp_path), str(tmp_path / "elsewhere")))
    states, decisions = _run([landed], tmp_path / "store")
    assert states[0].name == "Completed"
    assert decisions[0].reason == NOT_VERIFIED
    assert Path(states[0].result().path).is_file()


NOT_VERIFIED = "stored result does not verify (corrupted, or written by someone else); refused unread; recomputing"


class _LeavesMarker:
    """A payload that, once unpickled, creates a folder: proof that a record's payload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _record_of(decision: Decision) -> Path:
    return get_current_settings().results.local_storage_path / str(decision.key)


def _set_ledger_checksum(decision: Decision, checksum: str) -> None:
    """What someone who can write the cache folder can do: put a checksum of their choice beside a record."""
    with ledger() as db:
        db.execute("UPDATE entries SET record_checksum = ? WHERE key = ?", (checksum, decision.key))


def test_a_record_switched_to_pickle_is_refused_unread_even_with_the_ledger_updated_beside_it(
    landing: Path, tmp_path: Path
) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    _, decisions = _run([landed], tmp_path / "store")
    record = _record_of(decisions[0])
    marker = tmp_path / "the-payload-ran"
    envelope = json.loads(record.read_text())
    envelope["metadata"]["serializer"] = {"type": "pickle", "picklelib": "cloudpickle"}
    envelope["result"] = base64.encodebytes(pickle.dumps(_LeavesMarker(marker))).decode()
    forged = json.dumps(envelope).encode()
    record.write_bytes(forged)
    _set_ledger_checksum(decisions[0], hash_bytes(forged))
    states, decisions = _run([landed], tmp_path / "store")
    assert not marker.exists()
    assert states[0].name == "Completed"
    assert decisions[0].reason == (
        "stored result names the serializer 'pickle', not Conveyor's JSON one; refused unread; recomputing"
    )
    assert _run([landed], tmp_path / "store")[0][0].name == "Cached"  # the honest record written since hits


def _mac_under_another_key(decision: Decision, record: bytes, monkeypatch: pytest.MonkeyPatch) -> str:
    with monkeypatch.context() as patched:
        patched.setattr(mac, "mac_key", lambda: os.urandom(32))
        with ledger() as db:
            (outputs,) = db.execute("SELECT outputs FROM entries WHERE key = ?", (decision.key,)).fetchone()
        return mac.record_mac(str(decision.key), record, outputs)


@pytest.mark.parametrize("forged_checksum", ["plain checksum", "MAC under another key"])
def test_a_record_whose_mac_does_not_verify_is_a_miss_written_by_someone_else(
    forged_checksum: str, landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    _, decisions = _run([landed], tmp_path / "store")
    record = _record_of(decisions[0])
    forged = record.read_bytes().replace(str(tmp_path).encode(), str(tmp_path / "elsewhere").encode())
    record.write_bytes(forged)
    if forged_checksum == "plain checksum":
        _set_ledger_checksum(decisions[0], hash_bytes(forged))
    else:
        _set_ledger_checksum(decisions[0], _mac_under_another_key(decisions[0], forged, monkeypatch))
    states, decisions = _run([landed], tmp_path / "store")
    assert (states[0].name, decisions[0].reason) == ("Completed", NOT_VERIFIED)
    assert Path(states[0].result().path).is_file()
    assert _run([landed], tmp_path / "store")[0][0].name == "Cached"


def test_the_mac_key_comes_from_the_setting_else_a_secret_block_else_a_private_file_outside_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_slowly(_landed(tmp_path, "any.bin", os.urandom(10)), 0.0)  # a cached task made the block if it was missing
    assert mac.mac_key() == load_secret_key(CACHE_KEY_BLOCK)
    monkeypatch.setenv("CONVEYOR_STATE_DIR", str(tmp_path / "state"))
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):  # no server answers
        host_key = mac.mac_key()
    key_file = tmp_path / "state" / "keys" / "cache.key"
    assert bytes.fromhex(key_file.read_text()) == host_key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not key_file.is_relative_to(get_settings().task_cache_dir)
    monkeypatch.setenv("CONVEYOR_CACHE_KEY", "ab" * 32)
    assert mac.mac_key() == bytes([0xAB] * 32)
    monkeypatch.setenv("CONVEYOR_CACHE_KEY", "not hex")
    with pytest.raises(ValueError, match=r"^CONVEYOR_CACHE_KEY does not hold a key of 64 hex digits\.$"):
        mac.mac_key()


def test_a_deleted_output_file_is_recomputed(landing: Path, tmp_path: Path) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    states, _ = _run([landed], tmp_path / "store")
    snapshot: Snapshot = states[0].result()
    Path(snapshot.path).unlink()
    states, decisions = _run([landed], tmp_path / "store")
    assert states[0].name == "Completed"
    assert decisions[0].reason == f"output {snapshot.path} is missing; recomputing"
    assert Path(snapshot.path).read_bytes() == landed.read_bytes()


def test_results_are_stored_as_json_never_pickled(landing: Path, tmp_path: Path) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    _, decisions = _run([landed], tmp_path / "store")
    record = json.loads((get_current_settings().results.local_storage_path / str(decisions[0].key)).read_text())
    assert record["metadata"]["serializer"]["type"] == "json"


def test_an_input_changed_while_the_task_ran_leaves_no_cache_entry(landing: Path) -> None:
    original = os.urandom(1000)
    landed = _landed(landing, "day-1.parquet", original)
    changer = threading.Timer(0.5, lambda: landed.write_bytes(b"rewritten meanwhile"))
    changer.start()
    first = read_slowly(landed, 2.0, return_state=True)
    changer.join()
    assert first.name == "Completed"
    landed.write_bytes(original)  # the bytes the task was keyed by are back: only an entry could make this a hit
    assert read_slowly(landed, 0.0, return_state=True).name == "Completed"
    assert read_slowly(landed, 0.0, return_state=True).name == "Cached"


def test_force_recompute_by_flow_parameter_or_environment(
    landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    _run([landed], tmp_path / "store")
    states, decisions = _run([landed], tmp_path / "store", force_recompute=True)
    assert (states[0].name, decisions[0].reason) == ("Completed", "recompute forced")
    monkeypatch.setenv("CONVEYOR_FORCE_RECOMPUTE", "1")
    assert _run([landed], tmp_path / "store")[0][0].name == "Completed"
    monkeypatch.delenv("CONVEYOR_FORCE_RECOMPUTE")
    assert _run([landed], tmp_path / "store")[0][0].name == "Cached"


def test_the_cli_explains_a_run_task_by_task(landing: Path, tmp_path: Path) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    state = snapshot_each([str(landed), str(landed)], str(tmp_path / "store"), return_state=True)
    flow_run_id = str(state.state_details.flow_run_id)
    explained = run_cli("cache", "explain", flow_run_id, "--json")
    assert explained.returncode == 0, explained.stderr
    rows = json.loads(explained.stdout)
    assert rows == explain_table(decisions_of(flow_run_id))
    assert [r["cache"] for r in rows] == ["miss", "hit"]
    assert rows[1]["why"] == "inputs, code and dependencies unchanged"
    assert rows[0]["key"] == rows[1]["key"]


def test_explaining_an_unknown_run_says_so_in_one_sentence() -> None:
    unknown = str(UUID(int=7))
    result = run_cli("cache", "explain", unknown)
    assert result.returncode == 1
    assert result.stderr.startswith(f"Error: No cache decisions are recorded for flow run {unknown} in ")
    assert result.stderr.count("\n") == 1


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A task cache of this test's own (ledger, outputs), so pruning it leaves the session's alone."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("CONVEYOR_CACHE_DIR", str(folder))
    yield folder


def test_pruning_drops_entries_unused_for_n_days_and_they_are_recomputed(
    private_cache: Path, landing: Path, tmp_path: Path
) -> None:
    landed = _landed(landing, "day-1.parquet", os.urandom(1000))
    slow = read_slowly(landed, 0.0, return_state=True)
    assert slow.name == "Completed"
    assert prune_cache(dt.timedelta(days=1)) == (0, 0)  # used just now: kept
    assert read_slowly(landed, 0.0, return_state=True).name == "Cached"
    removed, _ = prune_cache(dt.timedelta(0))
    assert removed == 1
    assert read_slowly(landed, 0.0, return_state=True).name == "Completed"


def test_training_code_reaches_helpers_through_other_modules_and_validation_does_not() -> None:
    training = code_fingerprint(train_model.fn)
    validation = code_fingerprint(validate_snapshot.fn)
    assert "conveyor.models.features.encode_features" in training  # train_model -> train_rank -> features.encode_...
    assert "conveyor.models.training.train_rank" in training
    assert not any(name.startswith(("conveyor.models.training.", "conveyor.models.features.")) for name in validation)


@pytest.fixture
def toy_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package `toy` whose entry point calls a helper two imports deep: toy.a -> toy.b -> toy.c."""
    root = tmp_path / "src"
    files = {
        "__init__.py": "",
        "a.py": "from toy import b\n\n\ndef entry(x):\n    return b.middle(x)\n",
        "b.py": "from toy.c import helper\n\n\ndef middle(x):\n    return helper(x) + 1\n",
        "c.py": "SCALE = 2\n\n\ndef helper(x):\n    return x * SCALE\n\n\ndef unrelated():\n    return 0\n",
    }
    for name, text in files.items():
        (root / "toy").mkdir(parents=True, exist_ok=True)
        (root / "toy" / name).write_text(text)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("CONVEYOR_CODE_PACKAGES", '["toy"]')
    yield root / "toy"
    for name in [m for m in sys.modules if m == "toy" or m.startswith("toy.")]:
        del sys.modules[name]


def _fingerprint_of_entry() -> dict[str, str]:
    for name in [m for m in sys.modules if m == "toy" or m.startswith("toy.")]:
        del sys.modules[name]
    from toy import a

    return code_fingerprint(a.entry)


def test_editing_a_helper_two_imports_deep_changes_the_fingerprint_and_unrelated_code_does_not(
    toy_package: Path,
) -> None:
    before = _fingerprint_of_entry()
    assert set(before) == {"toy.a.entry", "toy.b.middle", "toy.c.helper", "toy.c.SCALE"}
    helper = toy_package / "c.py"
    helper.write_text(helper.read_text().replace("return 0", "return 1"))
    assert _fingerprint_of_entry() == before
    helper.write_text(helper.read_text().replace("return x * SCALE", "return SCALE * x"))
    after = _fingerprint_of_entry()
    assert {n for n in before if before[n] != after[n]} == {"toy.c.helper"}
    helper.write_text(helper.read_text().replace("SCALE = 2", "SCALE = 3"))
    assert _fingerprint_of_entry()["toy.c.SCALE"] != after["toy.c.SCALE"]
