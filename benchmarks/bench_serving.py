"""The model server: HTTP against ONNX Runtime in process, PyTorch eager in the same app, and production switches.

Two versions of a small MLP are trained and registered (a real registry, under a temporary Prefect server); each
server runs the real app (`conveyor.serving`) in a process of its own, one uvicorn worker, one scoring thread.
  latency   batch 1, p50 and p99: ONNX Runtime in process on ready inputs vs POST /v1/predict over one keep-alive
            httpx connection (goal: <= 1 ms added at p50)
  engines   the same FastAPI app, rows checked the same way, scoring with ONNX Runtime or with PyTorch eager
            (weights.pt through conveyor.models.mlp.load_weights): p99 and throughput at batch 1 and 256
  switch    production moved as delivery moves it while one client sends back to back: seconds from the alias
            file's write to the first answer of the new version (goal: <= 2 s), and requests that failed meanwhile
Run: .venv/bin/python -m benchmarks.bench_serving [--calls 2000] [--switches 3]
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# A private state folder (stores, task cache) before anything reads the settings.
STATE = Path(os.environ.get("CONVEYOR_BENCH_STATE") or tempfile.mkdtemp(prefix="conveyor-bench-serving-"))
os.environ["CONVEYOR_STATE_DIR"] = str(STATE)
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(STATE / "cache" / "results")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
# The registry lock's first use logs the server's refused duplicate insert (it is expected): keep the figures readable.
os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "CRITICAL"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime as dt  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from functools import partial  # noqa: E402
from typing import Any, cast  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from conveyor.export.runtime import KNOWN_INPUTS_FILE, onnx_inputs, onnx_model, onnx_run, onnx_session  # noqa: E402
from conveyor.registry.aliases import ALIASES_FILE, move_alias, read_aliases, rollback_alias  # noqa: E402
from conveyor.serving.routing import Routing  # noqa: E402
from conveyor.serving.run import bound_socket, serve  # noqa: E402
from conveyor.serving.server import ModelServer  # noqa: E402
from conveyor.serving.versions import load_version  # noqa: E402
from conveyor.settings import ServingSettings  # noqa: E402

MODEL = "bench-serving"
FEATURES_OF_TELEMETRY = ["age_days", "temperature", "vibration", "pressure", "rpm", "voltage", "machine_model"]
BATCH = 256
_DAY = dt.date(2026, 1, 1)


# ------------------------------------------------------------------------------------------------ the server process


class TorchScorer:
    """PyTorch eager behind ONNX Runtime's ``run``: the app's checked inputs, scored by the trained network."""

    def __init__(self, folder: Path) -> None:
        import torch

        from conveyor.models.mlp import load_weights

        torch.set_num_threads(1)  # as the server's ONNX Runtime sessions
        encoding = onnx_model(folder / "model.onnx").encoding
        hidden = json.loads((folder / "manifest.json").read_text())["params"]["hidden_units"]
        self.network = load_weights(folder / "weights.pt", hidden, encoding)
        # What the graph's LabelEncoder does in the graph: a category's code is its position plus one, 0 unknown.
        self.lookups = {
            c: {name: code for code, name in enumerate(v, start=1)} for c, v in encoding.categorical.items()
        }

    def run(self, _: object, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The network's probabilities, as ONNX Runtime's session.run returns its outputs."""
        import torch

        codes = [
            torch.from_numpy(np.fromiter((lookup.get(v, 0) for v in inputs[column]), dtype=np.int64))
            for column, lookup in self.lookups.items()
        ]
        with torch.inference_mode():
            return [self.network(torch.from_numpy(inputs["numeric"]), *codes).numpy()]


def serve_child(engine: str, store: Path, port: int) -> None:
    """The benchmark's server process: the real app, its production version scored by ``engine``."""
    server = ModelServer(store, MODEL, ServingSettings())
    if engine == "torch":  # the same loaded version, its session swapped for the network: the app does not change
        number = read_aliases(store, MODEL)["production"]
        loaded = load_version(store, MODEL, number, threads=1)
        folder = store / MODEL / f"v{number}"
        scorer = cast(Any, TorchScorer(folder))  # it answers run() as an InferenceSession does
        server.routing = Routing(production=dataclasses.replace(loaded, session=scorer))
    serve(server, bound_socket("127.0.0.1", port))


# ------------------------------------------------------------------------------------------------- the measurements


def _registered_store() -> Path:
    """Two versions of a small MLP (different training), registered as refit registers them; v1 in production."""
    from conveyor.blocks import ConveyorStores
    from conveyor.data.snapshots import snapshot_partition
    from conveyor.data.store import DataStore
    from conveyor.data.synthetic import generate_telemetry, write_partition
    from conveyor.export.families import build_model
    from conveyor.export.onnx import ParityThresholds
    from conveyor.models.boosting import BoostingParams
    from conveyor.models.training import TrainingParams
    from conveyor.registry.candidate import build_candidate
    from conveyor.registry.register import register_candidate
    from conveyor.schema.telemetry import TELEMETRY

    stores = ConveyorStores.from_settings()
    partition = write_partition(generate_telemetry(6_000, _DAY), stores.landing_path, _DAY)
    snapshot = snapshot_partition(partition, DataStore.of(stores))
    for epochs in (2, 3):
        built = build_model(
            snapshot,
            TELEMETRY,
            "torch",
            TrainingParams(epochs=epochs),
            BoostingParams(),
            None,
            ParityThresholds(),
            None,
            {"model_name": MODEL, "data_sha256": snapshot.sha256},
        )
        register_candidate(stores.model_path, MODEL, build_candidate(snapshot, built, []), [], f"bench-{epochs}")
    move_alias(stores.model_path, MODEL, "production", 1, None, via="deliver", reason="bench")
    return stores.model_path


def _percentiles_ms(samples: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(samples) * 1e3, [50, 99])
    return float(p50), float(p99)


Calls = dict[str, Callable[[], object]]


def _interleaved(calls: Calls, n: int) -> dict[str, list[float]]:
    """Seconds of each call, the calls alternating one by one (so drifting load is shared), after a warm-up."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(n + min(100, n)):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            if round_ >= min(100, n):
                samples[name].append(time.perf_counter() - started)
    return samples


@contextmanager
def server_process(engine: str, store: Path) -> Iterator[str]:
    """The app in a process of its own, ready; its URL."""
    with bound_socket("127.0.0.1", 0) as probe:
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "benchmarks.bench_serving", "--serve", engine, "--store", str(store)]
    log = (STATE / f"server-{engine}.log").open("ab")
    process = subprocess.Popen(
        [*command, "--port", str(port)], env={**os.environ, "CONVEYOR_BENCH_STATE": str(STATE)}, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {engine} server did not start; see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _body(rows: pd.DataFrame) -> bytes:
    return json.dumps({"rows": rows.to_dict("records")}).encode()


def _posting(client: httpx.Client, rows: pd.DataFrame) -> Callable[[], object]:
    """POST /v1/predict of these rows on a keep-alive connection, the body encoded once."""
    body, headers = _body(rows), {"Content-Type": "application/json"}

    def call() -> None:
        answer = client.post("/v1/predict", content=body, headers=headers)
        assert answer.status_code == 200, answer.text

    return call


def _posting_lean(connection: http.client.HTTPConnection, rows: pd.DataFrame) -> Callable[[], object]:
    """The same POST with the standard library's client: how much of the round trip is httpx's."""
    body, headers = _body(rows), {"Content-Type": "application/json"}

    def call() -> None:
        connection.request("POST", "/v1/predict", body=body, headers=headers)
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 200

    return call


def _row(name: str, samples: list[float], rows: int) -> str:
    p50, p99 = _percentiles_ms(samples)
    return f"  {name:<30} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   {rows / float(np.mean(samples)):>12,.0f} rows/s"


def latency_and_engines(store: Path, calls: int) -> None:
    """Batch 1 and 256: in process and over HTTP, ONNX Runtime and PyTorch eager, each pair interleaved."""
    from conveyor.serving.server import WORKERS

    folder = store / MODEL / "v1"
    known = pd.read_parquet(folder / KNOWN_INPUTS_FILE, columns=FEATURES_OF_TELEMETRY).head(200)
    sizes = {1: (known.head(1), calls), BATCH: (known.sample(BATCH, replace=True, random_state=0), calls // 16)}
    encoding = onnx_model(folder / "model.onnx").encoding
    session, scorer = onnx_session(folder / "model.onnx", threads=1), TorchScorer(folder)
    figures: dict[int, dict[str, list[float]]] = {}
    with (
        server_process("ort", store) as ort_url,
        server_process("torch", store) as torch_url,
        httpx.Client(base_url=ort_url, timeout=30) as ort_client,
        httpx.Client(base_url=torch_url, timeout=30) as torch_client,
    ):
        host, port = ort_url.removeprefix("http://").split(":")
        lean = http.client.HTTPConnection(host, int(port), timeout=30)
        for size, (rows, n) in sizes.items():
            ready = onnx_inputs(rows, encoding)
            # In process and over HTTP apart: an in-process call right after a request would pay for its cold caches.
            in_process = _interleaved(
                {
                    "ORT in process": partial(onnx_run, session, ready),
                    "torch eager in process": partial(scorer.run, None, ready),
                },
                n,
            )
            over_http: Calls = {
                "ORT over HTTP": _posting(ort_client, rows),
                "torch eager over HTTP": _posting(torch_client, rows),
            }
            if size == 1:
                over_http["ORT over HTTP, stdlib client"] = _posting_lean(lean, rows)
                over_http["GET /livez (no work), httpx"] = partial(ort_client.get, "/livez")
            figures[size] = in_process | _interleaved(over_http, n)
        lean.close()
    print(f"one uvicorn worker ({WORKERS}), one scoring thread, one client on one keep-alive connection")
    for size, by_name in figures.items():
        print(f"batch {size}:")
        for name, samples in by_name.items():
            print(_row(name, samples, size))
    single = figures[1]
    added = _percentiles_ms(single["ORT over HTTP"])[0] - _percentiles_ms(single["ORT in process"])[0]
    print(f"  added by HTTP to ONNX Runtime at batch 1, p50: {added:.3f} ms (goal <= 1 ms)")
    for size, by_name in figures.items():
        ort_http, torch_http = by_name["ORT over HTTP"], by_name["torch eager over HTTP"]
        ort_in, torch_in = by_name["ORT in process"], by_name["torch eager in process"]
        print(
            f"  batch {size}, torch eager / ORT: over HTTP p99 x{_ratio(torch_http, ort_http, 99):.2f}, throughput "
            f"x{float(np.mean(ort_http)) / float(np.mean(torch_http)):.2f}; in process p99 "
            f"x{_ratio(torch_in, ort_in, 99):.2f}, throughput x{float(np.mean(ort_in)) / float(np.mean(torch_in)):.2f}"
        )


def _ratio(numerator: list[float], denominator: list[float], q: float) -> float:
    return float(np.percentile(numerator, q) / np.percentile(denominator, q))


@dataclasses.dataclass
class _Traffic:
    """Answers of a client sending batch-1 requests back to back: (wall time, status, version)."""

    answers: list[tuple[float, int, int | None]] = dataclasses.field(default_factory=list)
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def send(self, url: str, body: bytes) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    reply = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
                    self.answers.append((time.time(), reply.status_code, reply.json().get("version")))
                except httpx.HTTPError:
                    self.answers.append((time.time(), 0, None))


def switches(store: Path, count: int) -> None:
    """Production moved ``count`` times (promote, rollback, ...) under steady traffic: seconds to the first answer."""
    known = pd.read_parquet(store / MODEL / "v1" / KNOWN_INPUTS_FILE, columns=FEATURES_OF_TELEMETRY)
    traffic = _Traffic()
    seconds = []
    with server_process("ort", store) as url:
        sender = threading.Thread(target=traffic.send, args=(url, _body(known.head(1))), daemon=True)
        sender.start()
        time.sleep(1.0)
        for index in range(count):
            current = read_aliases(store, MODEL)["production"]
            if index % 2:
                rollback_alias(store, MODEL, "production", reason="bench")
            else:
                move_alias(store, MODEL, "production", 3 - current, current, via="deliver", reason="bench")
            target = read_aliases(store, MODEL)["production"]
            written = (store / MODEL / ALIASES_FILE).stat().st_mtime
            while not any(v == target and at >= written for at, _, v in traffic.answers):
                time.sleep(0.005)
            seconds.append(next(at for at, _, v in traffic.answers if v == target and at >= written) - written)
            time.sleep(1.0)
        traffic.stop.set()
        sender.join(timeout=30)
    failed = sum(status != 200 for _, status, _ in traffic.answers)
    print(f"production switches under steady traffic (poll every {ServingSettings().serving_poll_seconds:g} s):")
    print(f"  alias written -> first answer of the new version: {', '.join(f'{s:.2f}' for s in seconds)} s")
    print(f"  slowest {max(seconds):.2f} s (goal <= 2 s); failed requests {failed} of {len(traffic.answers)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--switches", type=int, default=3)
    parser.add_argument("--serve", choices=["ort", "torch"], help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_child(args.serve, args.store, args.port)
        return
    from prefect.testing.utilities import prefect_test_harness

    print(f"load average {os.getloadavg()[0]:.1f} (1 min)")
    try:
        with prefect_test_harness(server_startup_timeout=180):  # registration and alias moves take the registry lock
            store = _registered_store()
            latency_and_engines(store, args.calls)
            switches(store, args.switches)
    finally:
        shutil.rmtree(STATE, ignore_errors=True)


if __name__ == "__main__":
    main()
