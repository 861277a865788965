"""Edge targets: int8 quantization with its accuracy gate, verified bundles, and latency on the target."""

from __future__ import annotations

import gzip
import json
import shutil
import statistics
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import onnxruntime as ort
import pandas as pd
from onnxruntime.quantization import QuantType, quantize_dynamic
from packaging.version import Version
from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field
from sklearn.metrics import roc_auc_score

from conveyor.cache import Content, cached_task, task_output_dir, uncached_task
from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.export.onnx import (
    DECISION_THRESHOLD,
    OnnxModel,
    onnx_inputs,
    onnx_model,
    onnx_predict,
    onnx_run,
    onnx_session,
)
from conveyor.io.files import FolderName, sha256_file, write_atomically, write_text_atomically
from conveyor.models.mlp import CATEGORY_VOCABULARY, OUTPUT_NAME
from conveyor.schema.telemetry import CATEGORY_FEATURE, LABEL, NUMERIC_FEATURES

BUNDLE_FORMAT = "conveyor-edge-bundle/1"
BUNDLE_MANIFEST = "manifest.json"
SAMPLE_INPUTS_FILE = "sample_inputs.parquet"
# The oldest ONNX Runtime that implements each ONNX opset (ONNX Runtime's compatibility table).
MIN_ONNXRUNTIME_FOR_OPSET = {17: "1.13.0", 18: "1.14.0", 19: "1.16.0", 20: "1.17.0", 21: "1.18.0"}
_LATENCY_CALLS = 500
_THROUGHPUT_BATCH = 256
_THROUGHPUT_CALLS = 50


class EdgeAccuracyError(AssertionError):
    """The edge variant predicts too differently from the fp32 model."""


class BundleVerificationError(ValueError):
    """An edge bundle is incomplete, tampered with, or needs a newer ONNX Runtime."""


class LatencyBudgetError(AssertionError):
    """The model is too slow on its target."""


class EdgeTarget(BaseModel):
    """A kind of device the model ships to, and how much accuracy its variant may give up."""

    name: FolderName = Field("gateway", description="Bundle name, e.g. gateway.")
    quantization: Literal["int8", "fp32"] = Field("int8", description="int8: dynamic quantization of the weights.")
    threads: int = Field(1, ge=1, description="Inference threads the device gives the model.")
    max_auc_drop: float = Field(0.005, ge=0, description="Largest held-out ROC AUC loss accepted versus fp32.")
    max_flip_rate: float = Field(0.005, ge=0, le=1, description="Largest share of held-out decisions that may flip.")


class EdgeAccuracy(BaseModel):
    """How the edge variant compares with the fp32 model on held-out machines."""

    target: str
    roc_auc_fp32: float
    roc_auc_edge: float
    auc_drop: float
    flip_rate: float
    size_bytes_fp32: int
    size_bytes_edge: int

    @property
    def size_ratio(self) -> float:
        """Edge model size as a share of the fp32 size."""
        return self.size_bytes_edge / self.size_bytes_fp32


class EdgeBundle(BaseModel):
    """A verified, self-describing folder (and its tarball) that an edge device runs."""

    target: str
    folder: Annotated[str, Content]
    archive: Annotated[str, Content]
    archive_sha256: str


class LatencyBudget(BaseModel):
    """How fast the model must be on its target."""

    p99_ms: float = Field(5.0, gt=0, description="Largest accepted 99th-percentile latency of one row.")
    min_rows_per_s: float = Field(
        10_000, gt=0, description=f"Smallest accepted throughput at batch {_THROUGHPUT_BATCH}."
    )


class LatencyReport(BaseModel):
    """Latency and throughput measured with the target's thread count."""

    target: str
    threads: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rows_per_s: float


def quantize_model(source: Path, out: Path, quantization: Literal["int8", "fp32"]) -> OnnxModel:
    """Write the variant of an fp32 ONNX file: int8 weights (dynamic quantization) or an fp32 copy."""
    if quantization == "int8":
        write_atomically(out, lambda tmp: quantize_dynamic(source, tmp, weight_type=QuantType.QInt8))
    else:
        write_atomically(out, lambda tmp: shutil.copyfile(source, tmp))
    return onnx_model(out)


@cached_task("Quantize for edge target")
def quantize_for_edge(exported: OnnxModel, target: EdgeTarget) -> OnnxModel:
    """The target's variant of the fp32 model: int8 weights (dynamic quantization) or an fp32 copy."""
    return quantize_model(Path(exported.path), task_output_dir() / "model.onnx", target.quantization)


@cached_task("Check edge accuracy")
def check_edge_accuracy(
    fp32: OnnxModel, edge: OnnxModel, snapshot: Snapshot, holdout_fraction: float, target: EdgeTarget
) -> EdgeAccuracy:
    """Fail unless the edge variant keeps ROC AUC and decisions within the target's limits on held-out machines."""
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction)
    labels = holdout[LABEL].to_numpy()
    reference = onnx_predict(onnx_session(Path(fp32.path)), holdout)
    variant = onnx_predict(onnx_session(Path(edge.path), target.threads), holdout)
    accuracy = EdgeAccuracy(
        target=target.name,
        roc_auc_fp32=float(roc_auc_score(labels, reference)),
        roc_auc_edge=float(roc_auc_score(labels, variant)),
        auc_drop=float(roc_auc_score(labels, reference) - roc_auc_score(labels, variant)),
        flip_rate=float(np.mean((reference >= DECISION_THRESHOLD) != (variant >= DECISION_THRESHOLD))),
        size_bytes_fp32=fp32.size_bytes,
        size_bytes_edge=edge.size_bytes,
    )
    create_table_artifact(
        [{**accuracy.model_dump(), "size_ratio": round(accuracy.size_ratio, 3)}],
        key=f"edge-accuracy-{target.name}",
        description=f"{target.quantization} variant for {target.name} versus fp32 on held-out machines",
    )
    if accuracy.auc_drop > target.max_auc_drop or accuracy.flip_rate > target.max_flip_rate:
        raise EdgeAccuracyError(
            f"The {target.quantization} variant for {target.name} loses {accuracy.auc_drop:.4f} ROC AUC "
            f"(limit {target.max_auc_drop}) and flips {accuracy.flip_rate:.2%} of decisions "
            f"(limit {target.max_flip_rate:.2%})."
        )
    get_run_logger().info(
        "%s: ROC AUC %.4f -> %.4f, %.2f%% decisions flipped, %.0f%% of the fp32 size",
        target.name,
        accuracy.roc_auc_fp32,
        accuracy.roc_auc_edge,
        100 * accuracy.flip_rate,
        100 * accuracy.size_ratio,
    )
    return accuracy


def _input_schema() -> list[dict[str, Any]]:
    return [
        {"name": "numeric", "dtype": "float32", "shape": ["batch", len(NUMERIC_FEATURES)], "columns": NUMERIC_FEATURES},
        {
            "name": CATEGORY_FEATURE,
            "dtype": "string",
            "shape": ["batch"],
            "vocabulary": CATEGORY_VOCABULARY[1:],
            "unknown": "any other string shares the <unknown> embedding",
        },
    ]


@cached_task("Build edge bundle")
def build_edge_bundle(
    edge: OnnxModel, target: EdgeTarget, model_name: str, version: int, data_sha256: str, known_inputs: Path
) -> EdgeBundle:
    """Write the bundle's manifest (hash of every file, input schema, thresholds, runtime needs) and its tarball."""
    folder = task_output_dir() / target.name
    write_atomically(folder / Path(edge.path).name, lambda tmp: shutil.copyfile(edge.path, tmp))
    samples = pd.read_parquet(known_inputs, columns=[*NUMERIC_FEATURES, CATEGORY_FEATURE])
    write_atomically(folder / SAMPLE_INPUTS_FILE, lambda tmp: samples.to_parquet(tmp, index=False))
    manifest = {
        "format": BUNDLE_FORMAT,
        "target": target.model_dump(),
        "model_name": model_name,
        "model_version": version,
        "data_sha256": data_sha256,
        "opset": edge.opset,
        "min_onnxruntime": MIN_ONNXRUNTIME_FOR_OPSET[edge.opset],
        "inputs": _input_schema(),
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", 1]},
        "decision_threshold": DECISION_THRESHOLD,
        "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != BUNDLE_MANIFEST},
    }
    write_text_atomically(folder / BUNDLE_MANIFEST, json.dumps(manifest, indent=2))
    archive = folder.with_name(f"{target.name}.tar.gz")

    def pack(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=target.name)

    write_atomically(archive, pack)
    return EdgeBundle(target=target.name, folder=str(folder), archive=str(archive), archive_sha256=sha256_file(archive))


class OpenedBundle(BaseModel):
    """A bundle whose every file matched its manifest."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        """The verified model file."""
        return self.folder / "model.onnx"

    def session(self) -> ort.InferenceSession:
        """An ONNX Runtime session with the target's thread count."""
        return onnx_session(self.model_path, int(self.manifest["target"]["threads"]))


def _verify(folder: Path) -> OpenedBundle:
    name = folder.name
    try:
        manifest = json.loads((folder / BUNDLE_MANIFEST).read_text())
        listed = manifest["files"]
        if manifest.get("format") != BUNDLE_FORMAT or "model.onnx" not in listed:
            raise KeyError("format")
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleVerificationError(
            f"{name} is not a Conveyor edge bundle: its {BUNDLE_MANIFEST} is missing or unreadable."
        ) from None
    unlisted = sorted(p.name for p in folder.iterdir() if p.name != BUNDLE_MANIFEST and p.name not in listed)
    if unlisted:
        raise BundleVerificationError(f"Bundle {name} holds files its manifest does not list: {', '.join(unlisted)}.")
    for file, digest in listed.items():
        path = folder / file
        if not path.is_file() or sha256_file(path) != digest:
            raise BundleVerificationError(
                f"Bundle {name} failed verification: {file} is missing or does not match its SHA-256."
            )
    if Version(ort.__version__) < Version(manifest["min_onnxruntime"]):
        raise BundleVerificationError(
            f"Bundle {name} needs ONNX Runtime {manifest['min_onnxruntime']} or newer; this is {ort.__version__}."
        )
    return OpenedBundle(folder=folder, manifest=manifest)


class _HostileMemberError(tarfile.FilterError):
    """A bundle archive holds a member no bundle has: an absolute path or a link."""

    def __init__(self, member: tarfile.TarInfo, reason: str) -> None:
        super().__init__(f"{member.name!r} {reason}, and a bundle holds only its own folders and files")


def _bundle_member(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
    """Admit a member through tarfile's data filter (nothing outside, no device) if it is no link nor absolute."""
    if member.name.startswith("/"):
        raise _HostileMemberError(member, "has an absolute path")  # the data filter would quietly make it relative
    member = tarfile.data_filter(member, destination)
    if member.islnk() or member.issym():
        raise _HostileMemberError(member, "is a link")
    return member


@contextmanager
def open_bundle(path: Path) -> Iterator[OpenedBundle]:
    """Open a bundle folder or tarball, refusing it unless every file matches the manifest."""
    if path.is_dir():
        yield _verify(path)
        return
    if not tarfile.is_tarfile(path):
        raise BundleVerificationError(f"{path} is neither a bundle folder nor a bundle tarball.")
    with tempfile.TemporaryDirectory(prefix="conveyor-bundle-") as tmp:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter=_bundle_member)
        except tarfile.FilterError as error:
            raise BundleVerificationError(f"{path.name} was refused: {error}.") from None
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise BundleVerificationError(f"{path.name} is a damaged archive: {error}.") from None
        folders = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(folders) != 1:
            raise BundleVerificationError(f"{path.name} should hold exactly one bundle folder.")
        yield _verify(folders[0])


def run_bundle(bundle: OpenedBundle, frame: pd.DataFrame) -> np.ndarray:
    """Failure probabilities for raw telemetry rows from a verified bundle."""
    missing = [c for c in (*NUMERIC_FEATURES, CATEGORY_FEATURE) if c not in frame.columns]
    if missing:
        raise ValueError(f"The input lacks the columns {', '.join(missing)} the bundle reads.")
    return onnx_predict(bundle.session(), frame)


def _timed(call: Callable[[], object], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def _percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1e3, q))


@uncached_task("Measure latency on target", why="measures the machine it runs on")
def measure_latency(bundle_path: Path, budget: LatencyBudget) -> LatencyReport:
    """Time one-row calls and batch-256 throughput with the target's threads; fail when over budget."""
    with open_bundle(bundle_path) as bundle:
        session = bundle.session()
        samples = pd.read_parquet(bundle.folder / SAMPLE_INPUTS_FILE)
        # Inputs are prepared once: the device hands the runtime ready arrays, so only inference is timed.
        one = onnx_inputs(samples.head(1))
        batch = onnx_inputs(samples.sample(_THROUGHPUT_BATCH, replace=True, random_state=0))
        for _ in range(20):  # warm-up: first calls allocate
            onnx_run(session, one)
        single = _timed(lambda: onnx_run(session, one), _LATENCY_CALLS)
        batched = _timed(lambda: onnx_run(session, batch), _THROUGHPUT_CALLS)
        target = bundle.manifest["target"]
    report = LatencyReport(
        target=target["name"],
        threads=target["threads"],
        p50_ms=_percentile_ms(single, 50),
        p95_ms=_percentile_ms(single, 95),
        p99_ms=_percentile_ms(single, 99),
        rows_per_s=_THROUGHPUT_BATCH / statistics.median(batched),
    )
    create_table_artifact([report.model_dump()], key=f"edge-latency-{report.target}", description="Latency on target")
    if report.p99_ms > budget.p99_ms or report.rows_per_s < budget.min_rows_per_s:
        raise LatencyBudgetError(
            f"{report.target} is over its latency budget: p99 {report.p99_ms:.3f} ms (budget {budget.p99_ms} ms), "
            f"{report.rows_per_s:,.0f} rows/s at batch {_THROUGHPUT_BATCH} (budget {budget.min_rows_per_s:,.0f})."
        )
    get_run_logger().info(
        "%s: p50 %.3f ms, p99 %.3f ms, %.0f rows/s", report.target, report.p50_ms, report.p99_ms, report.rows_per_s
    )
    return report
