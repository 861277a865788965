"""Registration: atomically numbered versions, assembled in staging folders, published with the manifest last."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import TaskRunContext
from pydantic import BaseModel

from conveyor.cache import Content, Location, cached_task, uncached_task
from conveyor.environment import lock_sha256, package_versions
from conveyor.events import emit_model_registered
from conveyor.export.edge import EdgeBundle, EdgeTarget, build_edge_bundle
from conveyor.export.families import FAMILIES
from conveyor.export.onnx import KNOWN_INPUTS_FILE
from conveyor.io.files import sha256_file, write_text_atomically
from conveyor.registry.aliases import move_alias, read_aliases
from conveyor.registry.candidate import Candidate
from conveyor.registry.lock import registry_lock
from conveyor.registry.storage import ModelStore
from conveyor.registry.store import (
    EDGE_FOLDER,
    MANIFEST,
    RESERVED,
    STAGING,
    RegisteredVersion,
    StoreRef,
    numbered,
    read_manifest,
    read_version,
)

# What a claim holds: the run that made it.
_CLAIM_FILE = "flow_run_id"
_RECORDED_PACKAGES = ("prefect", "torch", "xgboost", "onnx", "onnxmltools", "onnxruntime", "pandas", "pandera", "numpy")


class StagedVersion(BaseModel):
    """A version number reserved for one candidate; the claim folder proves the reservation."""

    model_store: str
    name: str
    version: int
    claim: Annotated[str, Content]


@cached_task("Reserve model version", ignore=("run_id",))
def reserve_model_version(
    model_store: Annotated[StoreRef, Location], name: str, candidate: Candidate, run_id: str
) -> StagedVersion:
    """Claim the next version number for this candidate; the same candidate keeps its number on a re-run."""
    store = ModelStore.at(model_store)
    version = _highest_number(store, name) + 1
    # Creating the claim either succeeds or finds it made: two runs can never hold one number.
    while not store.create(f"{name}/{RESERVED}/v{version}/{_CLAIM_FILE}", run_id.encode()):
        version += 1
    claim = store.local_copy(f"{name}/{RESERVED}/v{version}/{_CLAIM_FILE}")
    assert claim is not None  # just created, and claims are never removed
    return StagedVersion(model_store=str(store), name=name, version=version, claim=str(claim.parent))


def _highest_number(store: ModelStore, name: str) -> int:
    return max([*numbered(store, name), *numbered(store, f"{name}/{RESERVED}")], default=0)


def _environment() -> dict[str, str | None]:
    return {**package_versions(_RECORDED_PACKAGES), "uv.lock sha256": lock_sha256()}


def _report(name: str, version: int, candidate: Candidate, plot: str = "") -> str:
    metrics = candidate.evaluation.metrics.model_dump().items()
    rows = "\n".join(f"| {key} | {value:.4g} |" for key, value in metrics)
    edge = "\n".join(
        f"| {a.target} | {a.roc_auc_edge:.4f} | {a.auc_drop:+.4f} | {a.flip_rate:.2%} | {a.size_ratio:.0%} |"
        for _, a in candidate.edge
    )
    picture = f"\n![ROC and calibration]({plot})\n" if plot else ""
    source = Path(candidate.snapshot.source).name
    variants = (
        f"None: {candidate.edge_skipped}.\n"
        if candidate.edge_skipped
        else f"| target | ROC AUC | vs fp32 | decisions flipped | size vs fp32 |\n|---|---|---|---|---|\n{edge}\n"
    )
    return (
        f"# {name} v{version}\n\nModel family {candidate.family}, trained on snapshot `{candidate.snapshot.sha256}` "
        f"({source}).\n\n| metric | value |\n|---|---|\n{rows}\n{picture}\n## Edge variants\n\n{variants}"
    )


def _assemble(staging: Path, candidate: Candidate, bundles: list[EdgeBundle]) -> None:
    """Copy what the candidate's tasks made (each in its own cached output folder) into the version's layout."""
    files = {
        FAMILIES[candidate.family].model_file: candidate.model.model_path,
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
    manifest = read_manifest(folder)
    return bool(
        manifest["onnx"]["sha256"] == candidate.exported.sha256
        and manifest["data"]["sha256"] == candidate.snapshot.sha256
    )


@cached_task("Register model version", ignore=("run_id",))
def register_model_version(
    model_store: Annotated[StoreRef, Location],
    staged: StagedVersion,
    candidate: Candidate,
    bundles: list[EdgeBundle],
    run_id: str | None,
) -> RegisteredVersion:
    """Assemble the version in a private staging folder and publish it, manifest last: whole or not at all."""
    store = ModelStore.at(model_store)
    model_root = store.local_root / staged.name
    relative = f"{staged.name}/v{staged.version}"
    if manifest_copy := store.local_copy(f"{relative}/{MANIFEST}"):
        # Registered by an earlier run whose cache entry is gone: the same candidate is the same version.
        if _same_candidate(manifest_copy.parent, candidate):
            return read_version(manifest_copy.parent)
        raise FileExistsError(f"{staged.name} v{staged.version} is already registered with another model.")
    context = TaskRunContext.get()
    staging = model_root / STAGING / (str(context.task_run.id) if context else "local")
    shutil.rmtree(staging, ignore_errors=True)  # a failed attempt's leftovers
    staging.mkdir(parents=True)
    _assemble(staging, candidate, bundles)
    plot = Path(candidate.evaluation.plot_path).name
    write_text_atomically(staging / "report.md", _report(staged.name, staged.version, candidate, plot))
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
        "family": candidate.family,
        "dataset": candidate.dataset,
        "data": candidate.snapshot.model_dump(),
        "params": candidate.params.model_dump(),
        "training": candidate.model.model_dump(exclude={"weights_path", "model_path"}),
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
    # Published last: a folder without a manifest is never listed as a version.
    write_text_atomically(staging / MANIFEST, json.dumps(manifest, indent=2))
    store.publish(staging, relative, MANIFEST)  # every file in the store before the manifest is
    registered = read_version(model_root / f"v{staged.version}")
    get_run_logger().info("Registered %s v%d at %s", staged.name, staged.version, registered.path)
    emit_model_registered(staged.name, staged.version, candidate.dataset, candidate.snapshot.sha256, registered.metrics)
    return registered


@uncached_task("Publish model report", why="shows every run its version, computed now or reused")
def publish_model_report(registered: RegisteredVersion, candidate: Candidate) -> None:
    """The version's metrics and edge variants as this run's model-version artifact."""
    create_markdown_artifact(
        _report(registered.name, registered.version, candidate),
        key="model-version",
        description=f"{registered.name} v{registered.version}",
    )


def register_candidate(
    model_store: StoreRef, model_name: str, candidate: Candidate, edge_targets: list[EdgeTarget], run_id: str
) -> RegisteredVersion:
    """Reserve a version, bundle it for each edge target, register it and point `dev` at it, under the registry lock.

    refit/default and refit/gpu run side by side: under the lock, the second refit of a candidate finds the first
    one's reservation and version (cache hits) instead of registering the same candidate again.
    """
    with registry_lock(model_name):
        staged = reserve_model_version(model_store, model_name, candidate, run_id)
        known_inputs = Path(candidate.parity.known_inputs)
        bundles = [
            build_edge_bundle(variant, target, model_name, staged.version, candidate.snapshot.sha256, known_inputs)
            for (variant, _), target in zip(candidate.edge, edge_targets, strict=True)
        ]
        registered = register_model_version(model_store, staged, candidate, bundles, run_id)
        dev = read_aliases(model_store, model_name).get("dev")
        move_alias(model_store, model_name, "dev", registered.version, dev, via="refit", reason="registered by refit")
        return registered
