"""The promotion gate's statistics: the fast paired entity bootstrap against the naive one, side by side.

Measured in one run on synthetic held-out rows: machines share their label (10 % fail) and a random effect,
four machine models are the slices, and the challenger is slightly better than the champion.
  fast       compare_models on 1 M rows (2,000 machines): 5 metrics, both models, all rows and 4 slices, B = 2000
             resamples, DeLong per group; then the same on 10,000 machines, and the peak memory of both
  naive      the same bootstrap the straightforward way: per resample, gather the drawn machines' rows and recompute
             every metric exactly (the gate's point_metrics) for both models, on all rows and per slice; run for
             --naive-resamples resamples and extrapolated linearly to B (each resample costs the same)
  agreement  on 10,000 rows (1,000 machines), where the naive bootstrap runs all B resamples, on the very same
             resamples: the largest difference between the two methods' interval bounds, per metric (the ranking
             metrics are binned on all rows and exact on the slices, which have few enough distinct scores)
Run: .venv/bin/python -m benchmarks.bench_gate [--resamples 2000] [--naive-resamples 20] [--small-machines 1000]
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from typing import NamedTuple

import numpy as np

from conveyor.gate.statistics import (
    METRICS,
    Comparison,
    compare_models,
    delong_test,
    improvement,
    point_metrics,
    resample_counts,
)

GOAL_S = 10.0
SLICES = np.array(["M100", "M200", "M300", "M400"])


class Rows(NamedTuple):
    labels: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    entities: np.ndarray
    slices: np.ndarray


def held_out_rows(machines: int, rows_per_machine: int, seed: int = 1) -> Rows:
    """Held-out rows of machines that share their label and a random effect; the challenger is slightly better."""
    rng = np.random.default_rng(seed)
    failing = rng.permutation(machines) < machines // 10
    entities = np.repeat(np.arange(machines), rows_per_machine)
    labels = np.repeat(failing, rows_per_machine).astype(float)
    base = -2.5 + 1.6 * labels + np.repeat(rng.normal(0, 0.8, machines), rows_per_machine)
    champion = 1 / (1 + np.exp(-(base + rng.normal(0, 1, len(labels)))))
    challenger = 1 / (1 + np.exp(-(base + 0.1 * labels + rng.normal(0, 0.95, len(labels)))))
    slices = np.repeat(SLICES[rng.integers(0, len(SLICES), machines)], rows_per_machine)
    return Rows(labels, challenger, champion, entities, slices)


def groups(data: Rows) -> list[tuple[int, Rows]]:
    """All rows (group 0) and each slice (group i + 1), entities renumbered 0..E-1 as compare_models numbers them."""
    members = [np.ones(len(data.labels), bool)] + [data.slices == value for value in np.unique(data.slices)]
    found = []
    for group, member in enumerate(members):
        rows = Rows(*(array[member] for array in data))
        found.append((group, rows._replace(entities=np.unique(rows.entities, return_inverse=True)[1])))
    return found


def naive_bootstrap(data: Rows, resamples: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per group and metric, the challenger's, champion's and improvement's values on each resample, the slow way."""
    values: dict[str, np.ndarray] = {}
    for group, rows in groups(data):
        # The exact values and DeLong's test, once per group, as compare_models computes them too.
        point_metrics(rows.labels, rows.challenger)
        point_metrics(rows.labels, rows.champion)
        delong_test(rows.labels, rows.challenger, rows.champion)
        strata = np.bincount(rows.entities, weights=rows.labels) > 0
        by_entity = np.split(np.argsort(rows.entities, kind="stable"), np.cumsum(np.bincount(rows.entities))[:-1])
        found = {metric: np.empty((resamples, 3)) for metric in METRICS}
        for b, counts in enumerate(resample_counts(strata, resamples, seed, group)):
            drawn = np.concatenate([by_entity[e] for e in np.repeat(np.arange(len(counts)), counts)])
            new = point_metrics(rows.labels[drawn], rows.challenger[drawn])
            old = point_metrics(rows.labels[drawn], rows.champion[drawn])
            for metric in METRICS:
                found[metric][b] = new[metric], old[metric], improvement(metric, new[metric], old[metric])
        values |= {f"{group}/{metric}": array for metric, array in found.items()}
    return values


def fast_bounds(comparison: Comparison) -> dict[str, np.ndarray]:
    """Per group and metric, (lower, upper) of challenger, champion and improvement."""
    results = [comparison.overall, *comparison.slices.values()]
    bounds = {}
    for group, result in enumerate(results):
        for metric, compared in result.metrics.items():
            assert compared is not None and compared.champion is not None and compared.improvement is not None
            estimates = (compared.challenger, compared.champion, compared.improvement)
            bounds[f"{group}/{metric}"] = np.array([(e.lower, e.upper) for e in estimates], dtype=float)
    return bounds


def timed_fast(data: Rows, resamples: int) -> tuple[Comparison, float, float]:
    """compare_models and its wall and CPU seconds."""
    started, cpu = time.perf_counter(), time.process_time()
    comparison = compare_models(*data, resamples=resamples)
    return comparison, time.perf_counter() - started, time.process_time() - cpu


def peak_memory_mb(data: Rows, resamples: int) -> float:
    """Peak memory that compare_models allocates (numpy's buffers included), in MB."""
    tracemalloc.start()
    compare_models(*data, resamples=resamples)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def speed_figures(resamples: int, naive_resamples: int) -> None:
    """The fast and the naive bootstrap on 1 M rows, and the fast one on 10,000 machines."""
    data = held_out_rows(2000, 500)
    compare_models(*held_out_rows(100, 50), resamples=10)  # warm up imports and BLAS
    comparison, fast_s, fast_cpu = timed_fast(data, resamples)
    started = time.perf_counter()
    naive_bootstrap(data, naive_resamples)
    naive_s = (time.perf_counter() - started) / naive_resamples * resamples
    overall = comparison.overall
    auc = overall.metrics["roc_auc"]
    assert auc is not None and auc.improvement is not None and auc.champion is not None
    print(
        f"1 M rows, {overall.entities:,} machines ({overall.positive_entities} failing), 4 slices, both models, "
        f"5 metrics, B = {resamples}"
    )
    print(
        f"  ROC AUC challenger {auc.challenger.value:.4f}, champion {auc.champion.value:.4f}, improvement "
        f"{auc.improvement.value:+.4f} [{auc.improvement.lower:+.4f}, {auc.improvement.upper:+.4f}]"
    )
    print(f"  fast   {fast_s:8.2f} s  (CPU {fast_cpu:.2f} s)")
    print(
        f"  naive  {naive_s:8.1f} s  (measured over {naive_resamples} resamples, extrapolated linearly to {resamples})"
    )
    verdict = "met" if fast_s <= GOAL_S else "NOT met"
    print(f"  ratio  {naive_s / fast_s:8.0f} x  faster; goal <= {GOAL_S:.0f} s: {verdict}")
    wide = held_out_rows(10_000, 100)
    _, wide_s, wide_cpu = timed_fast(wide, resamples)
    print(f"1 M rows, 10,000 machines, same comparison: fast {wide_s:.2f} s (CPU {wide_cpu:.2f} s)")
    memory = [peak_memory_mb(rows, 400) for rows in (data, wide)]
    print(f"  peak memory of compare_models: {memory[0]:.0f} MB (2,000 machines), {memory[1]:.0f} MB (10,000)")


def agreement_figures(machines: int, resamples: int) -> None:
    """The largest difference between fast and naive interval bounds, on the same resamples."""
    data = held_out_rows(machines, 10, seed=2)
    started = time.perf_counter()
    naive = naive_bootstrap(data, resamples)
    naive_s = time.perf_counter() - started
    tail = 0.025
    fast = fast_bounds(compare_models(*data, resamples=resamples))
    print(
        f"agreement on {len(data.labels):,} rows ({machines:,} machines, 4 slices), all {resamples} resamples "
        f"(naive {naive_s:.0f} s): largest |fast - naive| over the interval bounds of all groups, and as a share of "
        "that interval's width"
    )
    for metric in METRICS:
        differences, shares = [], []
        for key, values in naive.items():
            if key.endswith(f"/{metric}"):
                bounds = np.quantile(values, [tail, 1 - tail], axis=0).T
                difference = np.abs(fast[key] - bounds)
                differences.append(difference.max())
                shares.append((difference / (bounds[:, 1:] - bounds[:, :1])).max())
        print(f"  {metric:<18} {max(differences):.1e}  ({max(shares):.2%})")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--naive-resamples", type=int, default=20)
    parser.add_argument("--small-machines", type=int, default=1000)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} cores")
    speed_figures(args.resamples, args.naive_resamples)
    agreement_figures(args.small_machines, args.resamples)


if __name__ == "__main__":
    main()
