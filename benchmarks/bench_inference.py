"""ONNX Runtime vs PyTorch eager on the refit model: batch-1 latency and batch-1024 throughput.

Both engines run in this process with the same thread count, on the same rows, side by side.
Run: .venv/bin/python -m benchmarks.bench_inference [--threads N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort
import torch

from tasks.export import to_onnx
from tasks.modeling import INPUT_NAMES, OUTPUT_NAME, FailureModel, encode_features
from tasks.synthetic import generate_telemetry

LATENCY_CALLS = 2_000
THROUGHPUT_CALLS = 200


def _time_calls(call: Callable[[], object], repeats: int) -> list[float]:
    for _ in range(50):  # warm-up
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    numeric, codes = encode_features(generate_telemetry(2_048, dt.date(2026, 1, 1)))
    model = FailureModel([64, 32], torch.from_numpy(numeric.mean(0)), torch.from_numpy(numeric.std(0))).eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    graph = to_onnx(model, {}).SerializeToString()
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def torch_call(n: int) -> Callable[[], object]:
        x, c = torch.from_numpy(numeric[:n]), torch.from_numpy(codes[:n])

        def call() -> object:
            with torch.inference_mode():
                return model(x, c)

        return call

    def ort_call(n: int) -> Callable[[], object]:
        feeds = {INPUT_NAMES[0]: numeric[:n], INPUT_NAMES[1]: codes[:n]}
        return lambda: session.run([OUTPUT_NAME], feeds)

    torch_p50 = statistics.median(_time_calls(torch_call(1), LATENCY_CALLS))
    ort_p50 = statistics.median(_time_calls(ort_call(1), LATENCY_CALLS))
    torch_rps = 1024 / statistics.median(_time_calls(torch_call(1024), THROUGHPUT_CALLS))
    ort_rps = 1024 / statistics.median(_time_calls(ort_call(1024), THROUGHPUT_CALLS))
    agree = np.allclose(session.run([OUTPUT_NAME], {INPUT_NAMES[0]: numeric, INPUT_NAMES[1]: codes})[0],
                        torch_call(len(codes))().numpy(), atol=1e-5)  # type: ignore[attr-defined]  # fmt: skip

    print(f"threads: {args.threads}; outputs agree: {agree}")
    print(f"batch 1 p50 latency   torch {torch_p50 * 1e6:8.1f} us   onnxruntime {ort_p50 * 1e6:8.1f} us"
          f"   ratio ort/torch {ort_p50 / torch_p50:.2f}  (goal <= 0.3)")  # fmt: skip
    print(f"batch 1024 throughput torch {torch_rps:10.0f} rows/s   onnxruntime {ort_rps:10.0f} rows/s"
          f"   ratio ort/torch {ort_rps / torch_rps:.2f}  (goal >= 1)")  # fmt: skip


if __name__ == "__main__":
    main()
