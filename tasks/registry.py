"""The model store: atomically numbered versions, assembled in staging folders, and their manifests."""

from __future__ import annotations

import datetime as dt
import json
import platform
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from pydantic import BaseModel, Field

from tasks.caching import Content, Location, cached_task, uncached_task
from tasks.data import Snapshot
from tasks.edge import EDGE_FOLDER, EdgeAccuracy, EdgeBundle
from tasks.evaluation import Evaluation
from tasks.events import emit_model_registered
from tasks.export import KNOWN_INPUTS_FILE, OnnxModel, ParityReport
from tasks.files import sha256_file, write_text_atomically
from tasks.training import TrainedModel, TrainingParams

MANIFEST = "manifest.json"
STAGING = ".staging"
RESERVED = ".reserved"
_VERSION_DIR = re.compile(r"^v(\d+)$")
_RECORDED_PACKAGES = ("prefect", "torch", "onnx", "onnxruntime", "pandas", "pandera", "numpy")


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


class StagedVersion(BaseModel):
    """A version number reserved for one candidate; the claim folder proves the reservation."""

    model_store: str
    name: str
    version: int
    claim: Annotated[str, Content]


class Candidate(BaseModel):
    """Everything a run made that goes into a version (bundles, which carry the version number, come apart)."""

    snapshot: Snapshot
    params: TrainingParams
    model: TrainedModel
    evaluation: Evaluation
    exported: OnnxModel
    parity: ParityReport
    edge: list[tuple[OnnxModel, EdgeAccuracy]]


def _numbered(folder: Path) -> dict[int, Path]:
    found = {}
    for child in folder.iterdir() if folder.is_dir() else ():
        if match := _VERSION_DIR.match(child.name):
            found[int(match.group(1))] = child
    return found


def version_dirs(model_store: Path, name: str) -> dict[int, Path]:
    """Registered versions of a model by number."""
    found = {n: path for n, path in _numbered(model_store / name).items() if (path / MANIFEST).is_file()}
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


def _highest_number(model_root: Path) -> int:
    return max([*_numbered(model_root), *_numbered(model_root / RESERVED)], default=0)


@cached_task("Reserve model version", ignore=("run_id",))
def reserve_model_version(
    model_store: Annotated[Path, Location], name: str, candidate: Candidate, run_id: str
) -> StagedVersion:
    """Claim the next version number for this candidate; the same candidate keeps its number on a re-run."""
    reserved = model_store / name / RESERVED
    reserved.mkdir(parents=True, exist_ok=True)
    version = _highest_number(model_store / name) + 1
    while True:
        try:
            # mkdir either creates the claim or fails: two runs can never hold one number.
            (reserved / f"v{version}").mkdir()
            break
        except FileExistsError:
            version += 1
    claim = reserved / f"v{version}"
    write_text_atomically(claim / "flow_run_id", run_id)
    return StagedVersion(model_store=str(model_store), name=name, version=version, claim=str(claim))


def _environment() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in _RECORDED_PACKAGES:
        versions[package] = metadata.version(package)
    return versions


def _report(staged: StagedVersion, candidate: Candidate, plot: str = "") -> str:
    metrics = candidate.evaluation.metrics.model_dump().items()
    rows = "\n".join(f"| {key} | {value:.4g} |" for key, value in metrics)
    edge = "\n".join(
        f"| {a.target} | {a.roc_auc_edge:.4f} | {a.auc_drop:+.4f} | {a.flip_rate:.2%} | {a.size_ratio:.0%} |"
        for _, a in candidate.edge
    )
    picture = f"\n![ROC and calibration]({plot})\n" if plot else ""
    source = Path(candidate.snapshot.source).name
    return (
        f"# {staged.name} v{staged.version}\n\nTrained on snapshot `{candidate.snapshot.sha256}` ({source}).\n\n"
        f"| metric | value |\n|---|---|\n{rows}\n{picture}\n"
        f"## Edge variants\n\n| target | ROC AUC | vs fp32 | decisions flipped | size vs fp32 |\n"
        f"|---|---|---|---|---|\n{edge}\n"
    )


def _assemble(staging: Path, candidate: Candidate, bundles: list[EdgeBundle]) -> None:
    """Copy what the candidate's tasks made (each in its own cached output folder) into the version's layout."""
    files = {
        "weights.pt": candidate.model.weights_path,
        "evaluation.png": candidate.evaluation.plot_path,
        "model.onnx": candidate.exported.path,
        KNOWN_INPUTS_FILE: candidate.parity.known_inputs,
    }
    for bundle in bundles:
        files[f"{EDGE_FOLDER}/{bundle.target}.tar.gz"] = bundle.archive
        shutil.copytree(bundle.folder, staging / EDGE_FOLDER / bundle.target)
    for name, source in files.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, staging / name)


def _same_candidate(folder: Path, candidate: Candidate) -> bool:
    manifest = json.loads((folder / MANIFEST).read_text())
    return bool(
        manifest["onnx"]["sha256"] == candidate.exported.sha256
        and manifest["data"]["sha256"] == candidate.snapshot.sha256
    )


@cached_task("Register model version", ignore=("run_id",))
def register_model_version(
    staged: StagedVersion, candidate: Candidate, bundles: list[EdgeBundle], run_id: str | None
) -> RegisteredVersion:
    """Assemble the version in a private staging folder and rename it into place: whole or not at all."""
    model_root = Path(staged.model_store) / staged.name
    folder = model_root / f"v{staged.version}"
    if (folder / MANIFEST).is_file():
        # Registered by an earlier run whose cache entry is gone: the same candidate is the same version.
        if _same_candidate(folder, candidate):
            return read_version(folder)
        raise FileExistsError(f"{staged.name} v{staged.version} is already registered with another model.")
    context = TaskRunContext.get()
    staging = model_root / STAGING / (str(context.task_run.id) if context else "local")
    shutil.rmtree(staging, ignore_errors=True)  # a failed attempt's leftovers
    staging.mkdir(parents=True)
    _assemble(staging, candidate, bundles)
    plot = Path(candidate.evaluation.plot_path).name
    write_text_atomically(staging / "report.md", _report(staged, candidate, plot))
    files = {
        str(p.relative_to(staging)): sha256_file(p)
        for p in sorted(staging.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
    manifest: dict[str, Any] = {
        "name": staged.name,
        "version": staged.version,
        "flow_run_id": run_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "data": candidate.snapshot.model_dump(),
        "params": candidate.params.model_dump(),
        "training": candidate.model.model_dump(exclude={"weights_path"}),
        "metrics": candidate.evaluation.metrics.model_dump(),
        "onnx": {
            "sha256": candidate.exported.sha256,
            "opset": candidate.exported.opset,
            "parity": candidate.parity.model_dump(exclude={"known_inputs"}),
        },
        "edge": {
            bundle.target: {"archive_sha256": bundle.archive_sha256, "accuracy": accuracy.model_dump()}
            for bundle, (_, accuracy) in zip(bundles, candidate.edge, strict=True)
        },
        "files": files,
        "environment": _environment(),
    }
    # Written last: a folder without a manifest is never listed as a version.
    write_text_atomically(staging / MANIFEST, json.dumps(manifest, indent=2))
    staging.rename(folder)
    registered = read_version(folder)
    get_run_logger().info("Registered %s v%d at %s", staged.name, staged.version, registered.path)
    create_markdown_artifact(
        _report(staged, candidate), key="model-version", description=f"{staged.name} v{staged.version}"
    )
    emit_model_registered(staged.name, staged.version, candidate.snapshot.sha256, registered.metrics)
    return registered


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
