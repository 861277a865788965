"""Versions made ready to serve: every file checked against its hash, the graph loaded and warmed on its known inputs.

A version is served only once its outputs on the known inputs stored with it equal the stored ones (within
``WARM_UP_ATOL``): a session that loaded but computes something else never answers a request.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import onnxruntime as ort

from conveyor.export.runtime import onnx_model, onnx_run, onnx_session, stored_output_error
from conveyor.registry.aliases import AliasError, resolve_reference
from conveyor.registry.store import DamagedVersionError, StoreRef, read_manifest
from conveyor.schema.catalog import find_spec
from conveyor.schema.spec import DatasetSpec, SpecError
from conveyor.serving.signature import Signature, input_signature

# The promotion gate holds a version's known outputs to the same limit (GatePolicy.known_inputs_atol).
WARM_UP_ATOL = 1e-6


class VersionUnavailableError(ValueError):
    """A version that cannot be served (damaged, failing its warm-up); the message is one sentence, nothing loaded."""


class UnknownVersionError(VersionUnavailableError):
    """The model has no such version."""


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedVersion:
    """One version ready to answer: its verified, warmed session and the signature requests are checked against."""

    model: str
    number: int
    session: ort.InferenceSession = dataclasses.field(repr=False)
    signature: Signature = dataclasses.field(repr=False)
    loaded_at: dt.datetime

    def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities for inputs shaped as the graph takes them, one per row."""
        return onnx_run(self.session, inputs)


def _dataset_spec(folder: Path) -> DatasetSpec | None:
    """The spec of the dataset a version was trained on, if its manifest names one that can still be found."""
    dataset = read_manifest(folder).get("dataset")
    try:
        return find_spec(dataset) if isinstance(dataset, str) else None
    except SpecError:
        return None  # the encoding stamped in the graph is enough to check rows; the spec only adds integer types


def load_version(model_store: StoreRef, name: str, number: int, threads: int) -> LoadedVersion:
    """A version verified by hash and warmed on its known inputs, ready to serve; VersionUnavailableError otherwise."""
    try:
        version = resolve_reference(model_store, f"{name}:{number}")  # every file checked against its hash
    except AliasError as unknown:
        raise UnknownVersionError(str(unknown)) from None
    except DamagedVersionError as damaged:
        raise VersionUnavailableError(f"{damaged} It is not served.") from None
    folder, path = Path(version.path), Path(version.onnx_path)
    try:
        session = onnx_session(path, threads)
        encoding = onnx_model(path).encoding
        rows, error = stored_output_error(session, folder, encoding)
    except (OSError, RuntimeError, ValueError, KeyError) as problem:  # ONNX Runtime's errors are RuntimeErrors
        raise VersionUnavailableError(f"{name} v{number} cannot be loaded ({problem}); it is not served.") from None
    if not error <= WARM_UP_ATOL:  # NaN fails too
        raise VersionUnavailableError(
            f"{name} v{number} failed its warm-up: on its {rows} known inputs its outputs are up to {error:.2e} from "
            f"the stored ones (limit {WARM_UP_ATOL:g}); it is not served."
        )
    return LoadedVersion(
        model=name,
        number=number,
        session=session,
        signature=input_signature(encoding, _dataset_spec(folder)),
        loaded_at=dt.datetime.now(dt.UTC),
    )
