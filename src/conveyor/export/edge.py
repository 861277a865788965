"""Edge targets: int8 quantization with its accuracy gate, signed and verified bundles, and latency on the target.

A bundle's manifest hashes every file and holds every field a decision depends on (threshold, input contract, target,
model version); the manifest is signed with Ed25519 (the Secret block ``conveyor-edge-signing-key``), and a device
reads nothing from a bundle before that signature verifies against the public key it trusts.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
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

import httpx
import numpy as np
import onnxruntime as ort
import pandas as pd
from onnxruntime.quantization import QuantType, quantize_dynamic
from packaging.version import Version
from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field
from sklearn.metrics import roc_auc_score

from conveyor.blocks import EDGE_SIGNING_KEY_BLOCK, decode_key, ensure_secret_key, load_secret_key
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
from conveyor.io.signing import public_key_of, sign, verifies
from conveyor.models.features import NUMERIC_INPUT, refusal_reasons
from conveyor.schema.spec import FeatureEncoding
from conveyor.settings import get_settings

BUNDLE_FORMAT = "conveyor-edge-bundle/1"
BUNDLE_MANIFEST = "manifest.json"
# The Ed25519 signature of the manifest's exact bytes, and the public key that claims to have made it.
SIGNATURE_FILE = "manifest.sig"
# Scored rows' column beside the probability: why a row has none.
REFUSED_COLUMN = "refused"
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
    """Fail unless the edge variant keeps ROC AUC and decisions within the target's limits on held-out entities."""
    encoding = fp32.encoding
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction, encoding.entity)
    labels = holdout[encoding.label].to_numpy()
    reference = onnx_predict(onnx_session(Path(fp32.path)), holdout, encoding)
    variant = onnx_predict(onnx_session(Path(edge.path), target.threads), holdout, encoding)
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
        description=f"{target.quantization} variant for {target.name} versus fp32 on held-out entities",
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


def _input_schema(encoding: FeatureEncoding) -> list[dict[str, Any]]:
    numeric = {"name": NUMERIC_INPUT, "dtype": "float32", "shape": ["batch", len(encoding.numeric)]}
    # Each numeric feature's bounds in the data contract: a row outside them is refused, never scored.
    ranges = {feature: list(encoding.ranges[feature]) for feature in encoding.numeric}
    categorical = [
        {
            "name": column,
            "dtype": "string",
            "shape": ["batch"],
            "vocabulary": categories,
            "unknown": "any other string shares the unknown embedding",
        }
        for column, categories in encoding.categorical.items()
    ]
    return [{**numeric, "columns": encoding.numeric, "valid_ranges": ranges}, *categorical]


@cached_task("Build edge bundle")
def build_edge_bundle(
    edge: OnnxModel, target: EdgeTarget, model_name: str, version: int, data_sha256: str, known_inputs: Path
) -> EdgeBundle:
    """Write the bundle's manifest (hash of every file, input schema, thresholds, runtime needs) and its tarball."""
    folder = task_output_dir() / target.name
    write_atomically(folder / Path(edge.path).name, lambda tmp: shutil.copyfile(edge.path, tmp))
    encoding = edge.encoding
    samples = pd.read_parquet(known_inputs, columns=[*encoding.numeric, *encoding.categorical])
    write_atomically(folder / SAMPLE_INPUTS_FILE, lambda tmp: samples.to_parquet(tmp, index=False))
    manifest = {
        "format": BUNDLE_FORMAT,
        "target": target.model_dump(),
        "model_name": model_name,
        "model_version": version,
        "data_sha256": data_sha256,
        "opset": edge.opset,
        "min_onnxruntime": MIN_ONNXRUNTIME_FOR_OPSET[edge.opset],
        "inputs": _input_schema(encoding),
        "encoding": encoding.model_dump(),
        "output": {"name": encoding.prediction, "dtype": "float32", "shape": ["batch", 1]},
        "decision_threshold": DECISION_THRESHOLD,
        "files": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.name != BUNDLE_MANIFEST},
    }
    write_text_atomically(folder / BUNDLE_MANIFEST, json.dumps(manifest, indent=2))
    sign_bundle(folder)
    archive = folder.with_name(f"{target.name}.tar.gz")

    def pack(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(folder, arcname=target.name)

    write_atomically(archive, pack)
    return EdgeBundle(target=target.name, folder=str(folder), archive=str(archive), archive_sha256=sha256_file(archive))


def sign_bundle(folder: Path) -> None:
    """Sign a bundle's manifest (the hash of every file, every decision field) with the edge signing key."""
    seed, _ = ensure_secret_key(EDGE_SIGNING_KEY_BLOCK)
    manifest = (folder / BUNDLE_MANIFEST).read_bytes()
    signature = {"algorithm": "ed25519", "public_key": public_key_of(seed), "signature": sign(seed, manifest)}
    write_text_atomically(folder / SIGNATURE_FILE, json.dumps(signature, indent=2))


def trusted_public_key() -> str:
    """The key bundles must be signed with: CONVEYOR_EDGE_PUBLIC_KEY, else the signing key block's on the server."""
    configured = get_settings().edge.edge_public_key
    if configured:
        return decode_key(configured, "CONVEYOR_EDGE_PUBLIC_KEY").hex()
    try:
        seed = load_secret_key(EDGE_SIGNING_KEY_BLOCK)
    except httpx.HTTPError:  # a device without a Prefect server: it must be told the key
        seed = None
    if seed is None:
        raise BundleVerificationError(
            "No key to verify edge bundles with: set CONVEYOR_EDGE_PUBLIC_KEY to the edge_public_key "
            "`conveyor up --json` prints."
        )
    return public_key_of(seed)


class OpenedBundle(BaseModel):
    """A bundle whose manifest is signed by the trusted key and whose every file matched that manifest."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def model_path(self) -> Path:
        """The verified model file."""
        return self.folder / "model.onnx"

    def session(self) -> ort.InferenceSession:
        """An ONNX Runtime session with the target's thread count."""
        return onnx_session(self.model_path, int(self.manifest["target"]["threads"]))


def _check_signature(folder: Path, manifest: bytes, public_key: str) -> None:
    """Refuse a manifest not signed by the trusted key: whoever rewrites it (and re-hashes its files) cannot sign."""
    try:
        signature = json.loads((folder / SIGNATURE_FILE).read_text())
        signer, value = str(signature["public_key"]), str(signature["signature"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleVerificationError(
            f"Bundle {folder.name} is not signed: its {SIGNATURE_FILE} is missing or unreadable."
        ) from None
    if signer.lower() != public_key:
        raise BundleVerificationError(
            f"Bundle {folder.name} is signed by another key than the trusted one ({public_key[:16]}…)."
        )
    if not verifies(public_key, manifest, value):
        raise BundleVerificationError(
            f"Bundle {folder.name} failed verification: its {BUNDLE_MANIFEST} was changed after it was signed."
        )


def _verify(folder: Path, public_key: str) -> OpenedBundle:
    """The bundle in a folder, once its signature, its files and its runtime needs check out."""
    name = folder.name
    try:
        signed = (folder / BUNDLE_MANIFEST).read_bytes()
    except OSError:
        raise BundleVerificationError(
            f"{name} is not a Conveyor edge bundle: its {BUNDLE_MANIFEST} is missing or unreadable."
        ) from None
    _check_signature(folder, signed, public_key)
    try:
        manifest = json.loads(signed)
        listed = manifest["files"]
        if manifest.get("format") != BUNDLE_FORMAT or "model.onnx" not in listed:
            raise KeyError("format")
    except (ValueError, KeyError, TypeError):
        raise BundleVerificationError(
            f"{name} is not a Conveyor edge bundle: its {BUNDLE_MANIFEST} is unreadable."
        ) from None
    unlisted = sorted(
        p.name for p in folder.iterdir() if p.name not in (BUNDLE_MANIFEST, SIGNATURE_FILE) and p.name not in listed
    )
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
def open_bundle(path: Path, expect_sha256: str | None = None, public_key: str | None = None) -> Iterator[OpenedBundle]:
    """Open a bundle folder or tarball, refusing it unless it is signed by the trusted key and matches its manifest.

    ``expect_sha256`` binds a tarball to the archive hash the registry recorded; ``public_key`` (hex) overrides the
    trusted key (``trusted_public_key``).
    """
    public_key = (public_key or trusted_public_key()).lower()
    if path.is_dir():
        if expect_sha256 is not None:
            raise BundleVerificationError(f"{path.name} is a folder; an expected SHA-256 binds a bundle tarball.")
        yield _verify(path, public_key)
        return
    if not tarfile.is_tarfile(path):
        raise BundleVerificationError(f"{path} is neither a bundle folder nor a bundle tarball.")
    with path.open("rb") as archive, tempfile.TemporaryDirectory(prefix="conveyor-bundle-") as tmp:
        if expect_sha256 is not None:  # hashed from the handle that is unpacked: the bytes checked are those used
            digest = hashlib.file_digest(archive, "sha256").hexdigest()
            if digest != expect_sha256.lower():
                raise BundleVerificationError(
                    f"{path.name} is not the registered bundle: its SHA-256 is {digest}, not {expect_sha256}."
                )
            archive.seek(0)
        try:
            with tarfile.open(fileobj=archive) as tar:
                tar.extractall(tmp, filter=_bundle_member)
        except tarfile.FilterError as error:
            raise BundleVerificationError(f"{path.name} was refused: {error}.") from None
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
            raise BundleVerificationError(f"{path.name} is a damaged archive: {error}.") from None
        folders = [p for p in Path(tmp).iterdir() if p.is_dir()]
        if len(folders) != 1:
            raise BundleVerificationError(f"{path.name} should hold exactly one bundle folder.")
        yield _verify(folders[0], public_key)


@dataclasses.dataclass(frozen=True)
class Scoring:
    """A bundle's answer for each input row: a probability, or the reason the row was refused."""

    probabilities: np.ndarray = dataclasses.field(repr=False)  # float32 per row; NaN where refused
    refused: np.ndarray = dataclasses.field(repr=False)  # per row: why it was refused, or None where scored

    @property
    def scored(self) -> np.ndarray:
        """Which rows have a probability."""
        return np.asarray(pd.isna(self.refused))

    def refusals(self) -> dict[str, int]:
        """How many rows were refused, by reason."""
        reasons, counts = np.unique(self.refused[~self.scored].astype(str), return_counts=True)
        return {str(reason): int(count) for reason, count in zip(reasons, counts, strict=True)}


def run_bundle(bundle: OpenedBundle, frame: pd.DataFrame) -> Scoring:
    """Probabilities from a verified bundle for the rows within its input contract; the others are refused."""
    encoding = FeatureEncoding.model_validate(bundle.manifest["encoding"])
    missing = [c for c in (*encoding.numeric, *encoding.categorical) if c not in frame.columns]
    if missing:
        raise ValueError(f"The input lacks the columns {', '.join(missing)} the bundle reads.")
    numeric = frame[encoding.numeric].apply(pd.to_numeric, errors="coerce")
    valid_ranges = bundle.manifest["inputs"][0]["valid_ranges"]
    checked = list(valid_ranges)
    reasons, _ = refusal_reasons(
        numeric[checked].to_numpy(dtype=np.float64), frame[checked].isna().to_numpy(), valid_ranges
    )
    probabilities = np.full(len(frame), np.nan, dtype=np.float32)
    accepted = np.asarray(pd.isna(reasons))
    if accepted.any():  # bad rows never reach the model: an int8 model quantizes over the whole batch
        rows = frame[accepted].assign(**{f: numeric[f].to_numpy()[accepted] for f in encoding.numeric})
        probabilities[accepted] = onnx_predict(bundle.session(), rows, encoding)
    unanswered = accepted & ~np.isfinite(probabilities)  # never a NaN taken for a decision, whatever the model does
    reasons[unanswered] = "no finite probability from the model"
    probabilities[unanswered] = np.nan
    return Scoring(probabilities=probabilities, refused=reasons)


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
        encoding = FeatureEncoding.model_validate(bundle.manifest["encoding"])
        one = onnx_inputs(samples.head(1), encoding)
        batch = onnx_inputs(samples.sample(_THROUGHPUT_BATCH, replace=True, random_state=0), encoding)
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
