"""The price of integrity: cache hits with and without record MACs, edge-run start with and without a signature.

Measured side by side in one run, interleaved call by call (medians):
  cache hit   a cached task served from the cache: records checked as now (JSON envelope + keyed MAC) vs as before
              (a plain BLAKE3 checksum, no envelope check); each way has its own entry, written the same way
  edge start  open_bundle (unpack, verify) + an ONNX Runtime session on a signed gateway bundle: the Ed25519
              signature checked as now vs skipped as before; the trusted key is given, as a device's setting gives it
Run: .venv/bin/python -m benchmarks.bench_integrity [--hits 200] [--opens 100]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# A private state folder (stores, task cache, result records) before anything reads the settings.
STATE = Path(tempfile.mkdtemp(prefix="conveyor-bench-integrity-"))
os.environ["CONVEYOR_STATE_DIR"] = str(STATE)
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(STATE / "cache" / "results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"  # one log line per hit would be timed too

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import AbstractContextManager, contextmanager, nullcontext  # noqa: E402
from unittest import mock  # noqa: E402

import onnx  # noqa: E402
import torch  # noqa: E402
from prefect.settings import get_current_settings  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from conveyor.cache import cached_task, mac, policy, records  # noqa: E402
from conveyor.data.synthetic import generate_telemetry  # noqa: E402
from conveyor.export import edge  # noqa: E402
from conveyor.export.onnx import onnx_model, to_onnx  # noqa: E402
from conveyor.io.hashing import hash_bytes  # noqa: E402
from conveyor.models.features import encode_features  # noqa: E402
from conveyor.models.mlp import TabularMLP  # noqa: E402
from conveyor.schema.spec import feature_encoding  # noqa: E402
from conveyor.schema.telemetry import TELEMETRY  # noqa: E402

_DAY = dt.date(2026, 1, 1)


@cached_task("Measure a file")
def measure_file(path: Path) -> dict[str, int]:
    """A small cached task: what a hit costs beyond the task itself."""
    return {"bytes": len(path.read_bytes())}


@contextmanager
def records_as_before() -> Iterator[None]:
    """Records sealed and checked as before authentication: a plain checksum, no envelope check."""
    with (
        mock.patch.object(policy, "record_mac", new=_plain_checksum),
        mock.patch.object(records, "record_mac", new=_plain_checksum),
        mock.patch.object(records, "_serializer_problem", new=lambda record: None),
    ):
        yield


def _plain_checksum(key: str, record: bytes, outputs: str) -> str:
    return hash_bytes(record)


def _authenticate(record: bytes) -> str | None:
    """The check a hit now makes on its record's bytes, alone."""
    return records._serializer_problem(record) or mac.record_mac("0" * 64, record, "{}")


Ways = dict[str, Callable[[], AbstractContextManager[object]]]


def _interleaved(ways: Ways, call: Callable[[str], object], n: int) -> dict[str, float]:
    """Median seconds of ``call`` under each way, the ways alternating call by call after one warm-up each."""
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for round_ in range(n + 1):
        for name, way in ways.items():
            with way():
                start = time.perf_counter()
                call(name)
                elapsed = time.perf_counter() - start
            if round_:
                samples[name].append(elapsed)
    return {name: statistics.median(times) for name, times in samples.items()}


def _report(what: str, medians: dict[str, float], unit: float, unit_name: str) -> None:
    before, now = medians["before"], medians["now"]
    print(f"{what}: before {before * unit:.2f} {unit_name}, now {now * unit:.2f} {unit_name}")
    print(f"  added: {(now - before) * unit:+.3f} {unit_name}, {(now - before) / before:+.1%} (goal <= +5%)")


def cache_figures(hits: int) -> None:
    """One cached task's hit, with records authenticated (now) and with a plain checksum (before)."""
    ways: Ways = {"before": records_as_before, "now": nullcontext}
    inputs = {name: STATE / f"input-{name}.bin" for name in ways}
    for name, path in inputs.items():
        path.write_bytes(os.urandom(4096))
        with ways[name]():
            assert measure_file(path, return_state=True).name == "Completed"
            assert measure_file(path, return_state=True).name == "Cached"

    def hit(name: str) -> None:
        state = measure_file(inputs[name], return_state=True)
        assert state.name == "Cached", state

    _report(f"cache hit, median of {hits}", _interleaved(ways, hit, hits), 1e3, "ms")
    record = next(get_current_settings().results.local_storage_path.iterdir()).read_bytes()
    checks = {"before": hash_bytes, "now": _authenticate}
    alone = _interleaved({"before": nullcontext, "now": nullcontext}, lambda name: checks[name](record), hits)
    print(
        f"  the check alone ({len(record):,} B record): before {alone['before'] * 1e6:.1f} µs, "
        f"now {alone['now'] * 1e6:.1f} µs"
    )


def _gateway_bundle() -> Path:
    """A signed int8 gateway bundle of an untrained model (timings do not depend on the weights)."""
    frame = generate_telemetry(300, _DAY)
    encoding = feature_encoding(TELEMETRY, {})
    numeric, _ = encode_features(frame, encoding)
    mean, std = torch.from_numpy(numeric.mean(0)), torch.from_numpy(numeric.std(0))
    model = TabularMLP([64, 32], encoding, mean, std).eval()
    fp32 = STATE / "fp32.onnx"
    onnx.save_model(to_onnx(model, encoding, {}), fp32)
    int8 = edge.quantize_model(fp32, STATE / "int8" / "model.onnx", "int8")
    known = STATE / "known.parquet"
    frame.to_parquet(known)
    bundle = edge.build_edge_bundle(onnx_model(Path(int8.path)), edge.EdgeTarget(), "bench", 1, "0" * 64, known)
    return Path(bundle.archive)


def edge_figures(opens: int) -> None:
    """open_bundle + session on a signed tarball, with the signature checked (now) and skipped (before)."""
    archive = _gateway_bundle()
    public_key = edge.trusted_public_key()

    def unsigned() -> AbstractContextManager[object]:
        return mock.patch.object(edge, "_check_signature", return_value=None)

    def start(name: str) -> None:
        with edge.open_bundle(archive, public_key=public_key) as opened:
            opened.session()

    ways: Ways = {"before": unsigned, "now": nullcontext}
    _report(f"edge-run start (open_bundle + session), median of {opens}", _interleaved(ways, start, opens), 1e3, "ms")
    lookup = _interleaved({"now": nullcontext}, lambda name: edge.trusted_public_key(), 20)["now"]
    print(
        f"  where no key is set, looking it up on the Prefect server adds {lookup * 1e3:.1f} ms "
        "(a device is given the key: CONVEYOR_EDGE_PUBLIC_KEY)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--hits", type=int, default=200)
    parser.add_argument("--opens", type=int, default=100)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} (1 min)")
    try:
        with prefect_test_harness(server_startup_timeout=180):  # a shared machine can be slow to start it
            cache_figures(args.hits)
            edge_figures(args.opens)
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
