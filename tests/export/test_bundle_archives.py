"""A bundle archive is unpacked only if every member is a plain folder or file inside the bundle."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.export.edge import BundleVerificationError, open_bundle
from conveyor.io.signing import public_key_of


@pytest.fixture(autouse=True)
def trusted_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A device given a public key, as edge-run needs: the archive itself is checked before any signature."""
    monkeypatch.setenv("CONVEYOR_EDGE_PUBLIC_KEY", public_key_of(bytes(32)))


def _open(path: Path) -> None:
    with open_bundle(path):
        pass


def _file(name: str, size: int = 4) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.size = size
    return member


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.linkname = kind, target
    return member


def _device(name: str) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.devmajor, member.devminor = tarfile.CHRTYPE, 1, 3
    return member


HOSTILE: dict[str, tuple[Callable[[], tarfile.TarInfo], str]] = {
    "absolute path": (lambda: _file("/tmp/conveyor-escaped"), "has an absolute path"),
    "parent folder": (lambda: _file("gateway/../../conveyor-escaped"), "outside the destination"),
    "symlink out": (lambda: _link("gateway/model.onnx", "/etc/passwd", tarfile.SYMTYPE), "absolute path"),
    "symlink in": (lambda: _link("gateway/model.onnx", "manifest.json", tarfile.SYMTYPE), "is a link"),
    "hard link": (lambda: _link("gateway/copy.onnx", "gateway/model.onnx", tarfile.LNKTYPE), "is a link"),
    "device": (lambda: _device("gateway/null"), "is a special file"),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_member_is_refused_before_anything_is_read(kind: str, tmp_path: Path) -> None:
    make, reason = HOSTILE[kind]
    archive = tmp_path / "gateway.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.addfile(_file("gateway/model.onnx"), io.BytesIO(b"onnx"))
        member = make()
        tar.addfile(member, io.BytesIO(b"evil") if member.isfile() else None)
    with pytest.raises(BundleVerificationError, match=rf"^gateway\.tar\.gz was refused: .*{reason}"):
        _open(archive)
    assert not (tmp_path.parent / "conveyor-escaped").exists()
    assert not Path("/tmp/conveyor-escaped").exists()


def test_a_truncated_archive_is_refused_as_damaged(tmp_path: Path) -> None:
    whole = tmp_path / "whole.tar.gz"
    model = os.urandom(1 << 16)
    with tarfile.open(whole, "w:gz") as tar:
        tar.addfile(_file("gateway/model.onnx", len(model)), io.BytesIO(model))
    archive = tmp_path / "gateway.tar.gz"
    archive.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BundleVerificationError, match=r"^gateway\.tar\.gz is a damaged archive: "):
        _open(archive)
