"""The model store's read side: versions, their manifests and edge bundles; imports no ML library.

A model's versions live in ``<model store>/<name>/vN/``, each with a ``manifest.json`` written last, so a folder
without one is never listed. Registration (``conveyor.registry.register``) is the only writer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, Field

from conveyor.cache import Content, uncached_task

MANIFEST = "manifest.json"
STAGING = ".staging"
RESERVED = ".reserved"
# Each edge target's bundle (folder and tarball) lies here inside a version.
EDGE_FOLDER = "edge"
_VERSION_DIR = re.compile(r"^v(\d+)$")


class RegisteredVersion(BaseModel):
    """One immutable version of a model in the store."""

    name: str
    version: int
    path: Annotated[str, Content] = Field(description="Folder of the version in the model store.")
    onnx_path: str
    edge_bundles: dict[str, str] = Field(description="Tarball of each edge target's bundle.")
    data_sha256: str
    flow_run_id: str | None
    metrics: dict[str, float | int]


def numbered_folders(folder: Path) -> dict[int, Path]:
    """Subfolders named like a version (``vN``), by number, whether or not they hold one."""
    found = {}
    for child in folder.iterdir() if folder.is_dir() else ():
        if match := _VERSION_DIR.match(child.name):
            found[int(match.group(1))] = child
    return found


def version_dirs(model_store: Path, name: str) -> dict[int, Path]:
    """Registered versions of a model by number."""
    found = {n: path for n, path in numbered_folders(model_store / name).items() if (path / MANIFEST).is_file()}
    return dict(sorted(found.items()))


def read_version(folder: Path) -> RegisteredVersion:
    """A version's summary, from its manifest."""
    manifest = json.loads((folder / MANIFEST).read_text())
    return RegisteredVersion(
        name=manifest["name"],
        version=manifest["version"],
        path=str(folder),
        onnx_path=str(folder / "model.onnx"),
        edge_bundles={t: str(folder / EDGE_FOLDER / f"{t}.tar.gz") for t in manifest.get("edge", {})},
        data_sha256=manifest["data"]["sha256"],
        flow_run_id=manifest.get("flow_run_id"),
        metrics=manifest["metrics"],
    )


def list_versions(model_store: Path, name: str | None = None) -> list[RegisteredVersion]:
    """Every registered version, of one model or of all, oldest first."""
    names = (
        [name] if name else sorted(p.name for p in model_store.iterdir() if p.is_dir()) if model_store.is_dir() else []
    )
    return [read_version(folder) for n in names for folder in version_dirs(model_store, n).values()]


@uncached_task("Find edge bundle", why="looks up the model store")
def find_edge_bundle(model_store: Path, name: str, version: int | None, target: str) -> Path:
    """The bundle tarball of one target of a registered version (the newest version when none is named)."""
    versions = version_dirs(model_store, name)
    if not versions:
        raise LookupError(f"No version of {name} is registered in {model_store}.")
    number = version if version is not None else max(versions)
    if number not in versions:
        raise LookupError(f"{name} has no version {number}; registered: {', '.join(f'v{n}' for n in versions)}.")
    bundles = read_version(versions[number]).edge_bundles
    if target not in bundles:
        raise LookupError(
            f"{name} v{number} has no bundle for target {target!r}; it has: {', '.join(bundles) or 'none'}."
        )
    return Path(bundles[target])
