"""The model store's read side: versions, their manifests and edge bundles; imports no ML library.

A model's versions live in ``<model store>/<name>/vN/``, each with a ``manifest.json`` written last, so a folder
without one is never listed. Registration (``conveyor.registry.register``) is the only writer. Versions are read
from local folders: the store's own, or (a bucket) this host's copies, each file checked against the manifest.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from pydantic import BaseModel, Field, ValidationError

from conveyor.cache import Content, uncached_task
from conveyor.data.objects import CorruptStoreObjectError
from conveyor.registry.storage import ModelStore

MANIFEST = "manifest.json"
STAGING = ".staging"
RESERVED = ".reserved"
# Each edge target's bundle (folder and tarball) lies here inside a version.
EDGE_FOLDER = "edge"
_VERSION_DIR = re.compile(r"^v(\d+)$")
_LOG = logging.getLogger("conveyor.registry")


class DamagedVersionError(ValueError):
    """A version folder whose manifest cannot be read or lacks what a version records."""


class RegisteredVersion(BaseModel):
    """One immutable version of a model in the store."""

    name: str
    version: int
    path: Annotated[str, Content] = Field(description="Folder of the version in the model store.")
    family: str = Field(description="Model family: torch (the MLP) or xgboost (boosted trees).")
    onnx_path: str
    onnx_sha256: str = Field(description="SHA-256 of the ONNX file, as registered.")
    edge_bundles: dict[str, str] = Field(description="Tarball of each edge target's bundle.")
    data_sha256: str
    flow_run_id: str | None
    metrics: dict[str, float | int]


# Where a registry function finds the model store: a store, or (a folder store) its path.
StoreRef = ModelStore | Path


def numbered(store: ModelStore, relative: str) -> set[int]:
    """Numbers of the folders under ``relative`` named like a version (``vN``), whether or not they hold one."""
    return {int(match.group(1)) for name in store.folders(relative) if (match := _VERSION_DIR.match(name))}


def version_dirs(model_store: StoreRef, name: str) -> dict[int, Path]:
    """Registered versions of a model by number: the local folder of each, its manifest current."""
    store = ModelStore.at(model_store)
    found = {n: store.local_copy(f"{name}/v{n}/{MANIFEST}") for n in sorted(numbered(store, name))}
    return {n: manifest.parent for n, manifest in found.items() if manifest}


class _DataRecord(BaseModel):
    """The snapshot a version was trained on, as its manifest records it."""

    sha256: str


class _OnnxRecord(BaseModel):
    """The version's ONNX file, as its manifest records it."""

    sha256: str


class _ManifestSummary(BaseModel):
    """What the read side needs of a manifest; anything missing or mistyped makes the version damaged."""

    name: str
    version: int
    flow_run_id: str | None = None
    # Manifests written before versions recorded their family are all of the torch model.
    family: str = "torch"
    data: _DataRecord
    onnx: _OnnxRecord
    metrics: dict[str, float | int]
    edge: dict[str, Any] = Field(default_factory=dict)


def read_manifest(folder: Path) -> dict[str, Any]:
    """A version's manifest, or DamagedVersionError naming the folder when it is unreadable or not a JSON object."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedVersionError(f"{folder} is damaged: its {MANIFEST} cannot be read ({error}).") from None
    if not isinstance(manifest, dict):
        raise DamagedVersionError(f"{folder} is damaged: its {MANIFEST} is not a JSON object.")
    return manifest


def read_version(folder: Path) -> RegisteredVersion:
    """A version's summary, from its manifest; DamagedVersionError naming the folder when the manifest is damaged."""
    try:
        manifest = _ManifestSummary.model_validate(read_manifest(folder))
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(map(str, problem["loc"]))
        raise DamagedVersionError(f"{folder} is damaged: {MANIFEST} field {where}: {problem['msg']}.") from None
    return RegisteredVersion(
        name=manifest.name,
        version=manifest.version,
        path=str(folder),
        family=manifest.family,
        onnx_path=str(folder / "model.onnx"),
        onnx_sha256=manifest.onnx.sha256,
        edge_bundles={t: str(folder / EDGE_FOLDER / f"{t}.tar.gz") for t in manifest.edge},
        data_sha256=manifest.data.sha256,
        flow_run_id=manifest.flow_run_id,
        metrics=manifest.metrics,
    )


def verify_version(model_store: StoreRef, folder: Path) -> RegisteredVersion:
    """A version whose every file still holds the bytes its manifest records; DamagedVersionError names the first not.

    Nothing is served, compared or promoted on its folder's word: a file swapped after registration is caught here.
    In a bucket the object itself is checked, and this host's copy is fetched (again) unless it holds those bytes.
    """
    store = ModelStore.at(model_store)
    version = read_version(folder)
    files = read_manifest(folder).get("files")
    if not isinstance(files, dict) or "model.onnx" not in files:
        raise DamagedVersionError(f"{folder} is damaged: its {MANIFEST} records no file hashes.")
    where = folder.relative_to(store.local_root).as_posix()
    for name, digest in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise DamagedVersionError(f"{folder} is damaged: its {MANIFEST} names a file outside it ({name}).")
        try:
            store.fetch(f"{where}/{name}", digest)
        except FileNotFoundError:
            raise DamagedVersionError(f"{version.name} v{version.version} is damaged: {name} is missing.") from None
        except CorruptStoreObjectError:
            raise DamagedVersionError(
                f"{version.name} v{version.version} is damaged: {name} does not hold the bytes its manifest records."
            ) from None
    return version


class VersionListing(NamedTuple):
    """The model store as read now: the versions that can be used, and each damaged one's folder and problem."""

    registered: list[RegisteredVersion]
    damaged: dict[str, str]


def read_versions(model_store: StoreRef, name: str | None = None) -> VersionListing:
    """Every registered version, of one model or of all, oldest first; a damaged one is set aside, named."""
    names = [name] if name else ModelStore.at(model_store).folders("")
    listing = VersionListing([], {})
    for folder in (folder for n in names for folder in version_dirs(model_store, n).values()):
        try:
            listing.registered.append(read_version(folder))
        except DamagedVersionError as error:
            listing.damaged[str(folder)] = str(error)
    return listing


def list_versions(model_store: StoreRef, name: str | None = None) -> list[RegisteredVersion]:
    """Every usable registered version, oldest first; each damaged one is skipped with a warning naming it."""
    listing = read_versions(model_store, name)
    for problem in listing.damaged.values():
        _LOG.warning("%s It is skipped.", problem)
    return listing.registered


@uncached_task("Find edge bundle", why="looks up the model store")
def find_edge_bundle(model_store: StoreRef, name: str, version: int | None, target: str) -> Path:
    """The bundle tarball of one target of a registered version (the newest version when none is named), verified."""
    versions = version_dirs(model_store, name)
    if not versions:
        raise LookupError(f"No version of {name} is registered in {model_store}.")
    if version is None:
        usable = list_versions(model_store, name)
        if not usable:
            damaged = ", ".join(f"v{n}" for n in versions)
            raise LookupError(f"{name} has no usable version in {model_store}; damaged: {damaged}.")
        version = usable[-1].version
    elif version not in versions:
        raise LookupError(f"{name} has no version {version}; registered: {', '.join(f'v{n}' for n in versions)}.")
    bundles = verify_version(model_store, versions[version]).edge_bundles  # its files local, and the bytes registered
    if target not in bundles:
        raise LookupError(
            f"{name} v{version} has no bundle for target {target!r}; it has: {', '.join(bundles) or 'none'}."
        )
    return Path(bundles[target])
