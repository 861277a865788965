"""The registry in an S3 bucket (moto): versions whole or absent, alias moves by conditional PUTs, checked reads."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import s3fs

import conveyor.registry.aliases as aliases
from conveyor.registry.aliases import (
    AliasConflictError,
    move_alias,
    read_aliases,
    read_audit,
    resolve_reference,
    rollback_alias,
)
from conveyor.registry.register import reserve_model_version
from conveyor.registry.storage import ModelStore
from conveyor.registry.store import MANIFEST, DamagedVersionError, RegisteredVersion, read_versions
from tests.fixtures.models import StagedCandidate, register_candidate
from tests.fixtures.object_store import ObjectStore
from tests.registry.conftest import race_for_alias

PREFIX = "models"
# A name of its own: events about its versions are never taken for those of the folder tests' candidate.
NAME = "bucket-candidate"


@pytest.fixture
def bucket(object_store: ObjectStore) -> ModelStore:
    """A model store in a fresh bucket."""
    return ModelStore.at(f"s3://{object_store.bucket}/{PREFIX}", object_store.credentials)


@pytest.fixture
def two_in_bucket(candidate: StagedCandidate, bucket: ModelStore, recompute: None) -> list[RegisteredVersion]:
    """Versions 1 and 2 of the candidate in the bucket."""
    return [register_candidate(candidate, bucket, NAME, run) for run in ("run-a", "run-b")]


def _keys(object_store: ObjectStore, under: str) -> list[str]:
    listing = object_store.client().list_objects_v2(Bucket=object_store.bucket, Prefix=f"{PREFIX}/{under}")
    return sorted(o["Key"].removeprefix(f"{PREFIX}/") for o in listing.get("Contents", []))


def _other_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """From here on, act as a host that has never read the bucket: its own, empty cache folder."""
    monkeypatch.setenv("CONVEYOR_CACHE_DIR", str(tmp_path / "other-host-cache"))
    return tmp_path / "other-host-cache"


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The keys of every PUT made through s3fs from now on, in order."""
    made: list[str] = []
    # (method, index of its remote path): put_file(local, remote), pipe_file(remote, data)
    for method, remote in (("_put_file", 1), ("_pipe_file", 0)):
        original = getattr(s3fs.S3FileSystem, method)

        async def spy(fs: Any, *args: Any, _original: Any = original, _remote: int = remote, **kwargs: Any) -> Any:
            made.append(str(args[_remote]))
            return await _original(fs, *args, **kwargs)

        monkeypatch.setattr(s3fs.S3FileSystem, method, spy)
    return made


def test_a_version_is_uploaded_whole_with_its_manifest_last_and_read_through_a_local_copy(
    candidate: StagedCandidate, bucket: ModelStore, object_store: ObjectStore, puts: list[str]
) -> None:
    version = register_candidate(candidate, bucket, NAME, "run-a")
    manifest = json.loads(Path(version.path, MANIFEST).read_text())
    assert _keys(object_store, f"{NAME}/v1/") == sorted(f"{NAME}/v1/{f}" for f in [*manifest["files"], MANIFEST])
    uploaded = [key.split(f"/{PREFIX}/", 1)[1] for key in puts if f"/{NAME}/v1/" in key]
    assert uploaded[-1] == f"{NAME}/v1/{MANIFEST}" and len(uploaded) == len(manifest["files"]) + 1
    assert Path(version.path).is_relative_to(bucket.local_root) and Path(version.onnx_path).is_file()
    assert [v.version for v in read_versions(bucket, NAME).registered] == [1]


def test_a_version_uploaded_without_its_manifest_is_never_listed_nor_its_number_reused(
    candidate: StagedCandidate, bucket: ModelStore, object_store: ObjectStore
) -> None:
    register_candidate(candidate, bucket, NAME, "run-a")
    client = object_store.client()
    for key in _keys(object_store, f"{NAME}/v1/"):
        if not key.endswith(MANIFEST):  # an upload that died before its manifest
            source = {"Bucket": object_store.bucket, "Key": f"{PREFIX}/{key}"}
            client.copy_object(
                CopySource=source, Bucket=object_store.bucket, Key=f"{PREFIX}/{key}".replace("/v1/", "/v2/")
            )
    listing = read_versions(bucket, NAME)
    assert [v.version for v in listing.registered] == [1] and listing.damaged == {}
    assert reserve_model_version.fn(bucket, NAME, candidate.candidate, "run-c").version == 3


def test_conditional_writes_refuse_a_stale_or_a_second_writer(bucket: ModelStore) -> None:
    assert bucket.create("probe/claim", b"first") and not bucket.create("probe/claim", b"second")
    assert bucket.replace("probe/state", b"one", None) and not bucket.replace("probe/state", b"two", None)
    read = bucket.read("probe/state")
    assert read is not None
    assert bucket.replace("probe/state", b"three", read[1])
    assert not bucket.replace("probe/state", b"four", read[1])  # the ETag read is stale now
    final = bucket.read("probe/state")
    assert final is not None and final[0] == b"three"


def test_of_two_moves_at_once_exactly_one_wins_and_the_log_matches(
    bucket: ModelStore, object_store: ObjectStore, two_in_bucket: list[RegisteredVersion]
) -> None:
    winner, loser = race_for_alias(bucket, "candidate-a", NAME)
    assert f"names v{winner}, not no version as expected" in loser
    assert read_aliases(bucket, NAME) == {"candidate-a": winner}
    assert [(m.sequence, m.to_version) for m in read_audit(bucket, NAME)] == [(1, winner)]
    assert _keys(object_store, f"{NAME}/audit/") == [f"{NAME}/audit/00000001.json"]


def test_a_writer_that_bypassed_the_lock_cannot_overwrite_a_newer_alias_state(
    bucket: ModelStore, two_in_bucket: list[RegisteredVersion], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aliases, "registry_lock", lambda _: nullcontext())
    catch_up = aliases._catch_up_log

    def another_move_meanwhile(store: ModelStore, name: str, state: Any) -> None:
        """Between our read of aliases.json and our PUT, another writer moves the alias."""
        monkeypatch.setattr(aliases, "_catch_up_log", catch_up)
        move_alias(bucket, NAME, "dev", 2, None, via="refit", reason="the other writer")

    monkeypatch.setattr(aliases, "_catch_up_log", another_move_meanwhile)
    with pytest.raises(AliasConflictError, match=f"dev of {NAME} names v2, not no version as expected"):
        move_alias(bucket, NAME, "dev", 1, None, via="refit", reason="stale")
    assert read_aliases(bucket, NAME) == {"dev": 2}
    assert [m.reason for m in read_audit(bucket, NAME)] == ["the other writer"]


def test_a_move_the_log_missed_is_logged_by_the_next_and_rollback_walks_back(
    bucket: ModelStore, object_store: ObjectStore, two_in_bucket: list[RegisteredVersion]
) -> None:
    move_alias(bucket, NAME, "production", 1, None, via="deliver", reason="first release")
    move_alias(bucket, NAME, "production", 2, 1, via="deliver", reason="second release")
    # A writer that died after replacing aliases.json and before logging its move:
    object_store.client().delete_object(Bucket=object_store.bucket, Key=f"{PREFIX}/{NAME}/audit/00000002.json")
    move_alias(bucket, NAME, "production", 1, 2, via="deliver", reason="v1 released again")
    assert [(m.sequence, m.to_version) for m in read_audit(bucket, NAME)] == [(1, 1), (2, 2), (3, 1)]
    move = rollback_alias(bucket, NAME, "production", "v1 misbehaves")
    assert (move.from_version, move.to_version, move.kind, move.sequence) == (1, 2, "rolled_back", 4)
    assert read_aliases(bucket, NAME) == {"production": 2}
    assert _keys(object_store, f"{NAME}/audit/") == [f"{NAME}/audit/{n:08d}.json" for n in (1, 2, 3, 4)]


def test_a_tampered_object_is_caught_and_nothing_points_at_it_while_a_bad_local_copy_is_fetched_again(
    bucket: ModelStore,
    object_store: ObjectStore,
    two_in_bucket: list[RegisteredVersion],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    onnx_copy = Path(two_in_bucket[0].onnx_path)
    onnx_copy.write_bytes(b"a local copy gone bad")
    assert resolve_reference(bucket, f"{NAME}:1").onnx_sha256 == two_in_bucket[0].onnx_sha256
    assert onnx_copy.read_bytes() != b"a local copy gone bad"  # fetched again from the bucket, and checked

    key = f"{PREFIX}/{NAME}/v2/model.onnx"
    object_store.client().put_object(Bucket=object_store.bucket, Key=key, Body=b"not the registered model")
    problem = rf"{NAME} v2 is damaged: model\.onnx does not hold the bytes its manifest records"
    with pytest.raises(DamagedVersionError, match=problem):
        move_alias(bucket, NAME, "dev", 2, None, via="user", reason="try")  # on the host that registered it
    _other_host(monkeypatch, tmp_path)
    with pytest.raises(DamagedVersionError, match=problem):
        resolve_reference(bucket, f"{NAME}:2")
    assert not (bucket.local_root / NAME / "v2" / "model.onnx").exists()  # never copied
    assert read_aliases(bucket, NAME) == {} and read_audit(bucket, NAME) == []
