"""The model store: staging areas, atomically numbered versions, and their manifests."""

from __future__ import annotations

import datetime as dt
import errno
import json
import platform
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel, Field

from tasks.data import Snapshot
from tasks.evaluation import Evaluation
from tasks.events import emit_model_registered
from tasks.export import OnnxModel, ParityReport
from tasks.files import sha256_file, write_text_atomically
from tasks.training import TrainedModel, TrainingParams

MANIFEST = "manifest.json"
STAGING = ".staging"
_VERSION_DIR = re.compile(r"^v(\d+)$")
_RECORDED_PACKAGES = ("prefect", "torch", "onnx", "onnxruntime", "pandas", "pandera", "numpy")


class RegisteredVersion(BaseModel):
    """One immutable version of a model in the store."""

    name: str
    version: int
    path: str = Field(description="Folder of the version in the model store.")
    onnx_path: str
    data_sha256: str
    flow_run_id: str | None
    metrics: dict[str, float | int]


def version_dirs(model_store: Path, name: str) -> dict[int, Path]:
    """Registered versions of a model by number."""
    root = model_store / name
    found = {}
    for child in root.iterdir() if root.is_dir() else ():
        if (match := _VERSION_DIR.match(child.name)) and (child / MANIFEST).is_file():
            found[int(match.group(1))] = child
    return dict(sorted(found.items()))


def read_version(folder: Path) -> RegisteredVersion:
    """A version's summary, from its manifest."""
    manifest = json.loads((folder / MANIFEST).read_text())
    return RegisteredVersion(
        name=manifest["name"],
        version=manifest["version"],
        path=str(folder),
        onnx_path=str(folder / "model.onnx"),
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


@task(name="Open staging area")
def open_staging_area(model_store: Path, name: str, run_id: str) -> Path:
    """A private folder in the model store where this run assembles its version before registering it."""
    staging = model_store / name / STAGING / run_id
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def _environment() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _RECORDED_PACKAGES:
        versions[package] = metadata.version(package)
    return versions


def _report(version: int, name: str, snapshot: Snapshot, evaluation: Evaluation, plot: str = "") -> str:
    rows = "\n".join(f"| {key} | {value:.4g} |" for key, value in evaluation.metrics.model_dump().items())
    picture = f"\n![ROC and calibration]({plot})\n" if plot else ""
    return (
        f"# {name} v{version}\n\nTrained on snapshot `{snapshot.sha256}` ({Path(snapshot.source).name}).\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n{picture}"
    )


@task(name="Register model version")
def register_model_version(
    staging: Path,
    name: str,
    snapshot: Snapshot,
    params: TrainingParams,
    model: TrainedModel,
    evaluation: Evaluation,
    exported: OnnxModel,
    parity: ParityReport,
    run_id: str | None,
) -> RegisteredVersion:
    """Seal the staging area into the next version number; a version appears whole or not at all."""
    files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if not p.name.startswith(".")}
    manifest: dict[str, Any] = {
        "name": name,
        "flow_run_id": run_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "data": snapshot.model_dump(),
        "params": params.model_dump(),
        "training": model.model_dump(exclude={"weights_path"}),
        "metrics": evaluation.metrics.model_dump(),
        "onnx": {"sha256": exported.sha256, "opset": exported.opset, "parity": parity.model_dump()},
        "files": files,
        "environment": _environment(),
    }
    model_root = staging.parent.parent
    version = max(version_dirs(model_root.parent, name), default=0) + 1
    while True:
        manifest["version"] = version
        write_text_atomically(staging / MANIFEST, json.dumps(manifest, indent=2))
        plot = Path(evaluation.plot_path).name
        write_text_atomically(staging / "report.md", _report(version, name, snapshot, evaluation, plot))
        try:
            # rename() refuses a non-empty target, so two runs can never claim one number.
            staging.rename(model_root / f"v{version}")
            break
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            version += 1
    registered = read_version(model_root / f"v{version}")
    get_run_logger().info("Registered %s v%d at %s", name, version, registered.path)
    create_markdown_artifact(
        _report(version, name, snapshot, evaluation),
        key="model-version",
        description=f"{name} v{version}",
    )
    emit_model_registered(name, version, snapshot.sha256, registered.metrics)
    return registered
