"""ONNX Runtime (fp32 and int8) vs PyTorch eager on the refit model: latency, throughput and size.

All engines run in this process with the same thread count, on the same rows, side by side.
Run: .venv/bin/python -m benchmarks.bench_inference [--threads N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import onnx
import pandas as pd
import torch

from conveyor.data.synthetic import generate_telemetry
from conveyor.export.edge import quantize_model
from conveyor.export.onnx import onnx_inputs, onnx_run, onnx_session, to_onnx
from conveyor.models.features import encode_features
from conveyor.models.mlp import TabularMLP
from conveyor.schema.spec import feature_encoding
from conveyor.schema.telemetry import TELEMETRY

LATENCY_CALLS = 2_000
THROUGHPUT_CALLS = 200
BATCH = 1024
ENCODING = feature_encoding(TELEMETRY, {})


def _median_s(call: Callable[[], object], repeats: int) -> float:
    for _ in range(50):  # warm-up
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _engines(hidden: list[int], frame: pd.DataFrame, threads: int, tmp: Path) -> dict[str, Callable[[int], object]]:
    """Scoring functions of n rows for torch eager, ORT fp32 and ORT int8, plus the two ONNX file sizes."""
    numeric, codes = encode_features(frame, ENCODING)
    mean, std = torch.from_numpy(numeric.mean(0)), torch.from_numpy(numeric.std(0))
    model = TabularMLP(hidden, ENCODING, mean, std).eval()
    fp32_path = tmp / f"fp32-{'x'.join(map(str, hidden))}.onnx"
    onnx.save_model(to_onnx(model, ENCODING, {}), fp32_path)
    int8 = quantize_model(fp32_path, tmp / f"{fp32_path.stem}-int8.onnx", "int8")
    sessions = {"ort fp32": onnx_session(fp32_path, threads), "ort int8": onnx_session(Path(int8.path), threads)}

    def eager(n: int) -> object:
        with torch.inference_mode():
            return model(torch.from_numpy(numeric[:n]), *(torch.from_numpy(c[:n]) for c in codes))

    engines: dict[str, Callable[[int], object]] = {"torch eager": eager}
    prepared = {n: onnx_inputs(frame.head(n), ENCODING) for n in (1, BATCH)}
    for name, session in sessions.items():
        engines[name] = partial(lambda s, n: onnx_run(s, prepared[n]), session)
    print(
        f"model {hidden}: fp32 {fp32_path.stat().st_size:,} B, int8 {int8.size_bytes:,} B, "
        f"int8/fp32 size {int8.size_bytes / fp32_path.stat().st_size:.2f}  (goal <= 0.30)"
    )
    return engines


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = generate_telemetry(BATCH, dt.date(2026, 1, 1))
    print(f"threads: {args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        for hidden in ([64, 32], [512, 256]):
            engines = _engines(hidden, frame, args.threads, Path(tmp))
            latency = {name: _median_s(partial(engine, 1), LATENCY_CALLS) for name, engine in engines.items()}
            rate = {
                name: BATCH / _median_s(partial(engine, BATCH), THROUGHPUT_CALLS) for name, engine in engines.items()
            }
            base = "torch eager"
            for name in engines:
                print(
                    f"  {name:<11} batch 1 p50 {latency[name] * 1e6:7.1f} us ({latency[name] / latency[base]:.2f}x)"
                    f"   batch {BATCH} {rate[name]:>12,.0f} rows/s ({rate[name] / rate[base]:.2f}x torch)"
                )
    print("goals: ORT batch-1 latency <= 0.3x torch; ORT batch-1024 throughput >= 1x torch")


if __name__ == "__main__":
    main()
