"""Each gate check passes or fails on the evidence it names, with its numbers in one sentence."""

from __future__ import annotations

import numpy as np
import pytest

from conveyor.gate.checks import check_comparison, check_floors, check_latency, check_parity_evidence, check_slices
from conveyor.gate.policy import GatePolicy, LatencyBudget, MetricFloors
from conveyor.gate.scoring import Latency
from conveyor.gate.statistics import Comparison, compare_models

POLICY = GatePolicy(resamples=400)
SLICES = ("m1", "m2", "m3", "m4")


def _comparison(regressed_slice: str | None, gain: float) -> Comparison:
    """600 machines of 20 rows each over four models; the challenger sharper by ``gain`` except on one slice."""
    rng = np.random.default_rng(7)
    machines = 600
    label = rng.random(machines) < 0.3
    slice_of = np.array(SLICES)[rng.integers(0, len(SLICES), machines)]
    rows = np.repeat(np.arange(machines), 20)
    signal = np.where(label[rows], 1.0, -1.0)

    def scores(strength: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-(strength * signal + rng.normal(0, 1.5, len(rows)))))

    champion = scores(np.full(len(rows), 1.0))
    sharper = np.where(slice_of[rows] == regressed_slice, 0.2, 1.0 + gain)
    return compare_models(label[rows].astype(int), scores(sharper), champion, rows, slice_of[rows], resamples=400)


def test_a_challenger_better_overall_but_worse_on_one_slice_fails_the_slice_check_only_there() -> None:
    comparison = _comparison("m3", gain=0.6)
    assert check_comparison(comparison, POLICY, champion=1).passed
    slices = check_slices(comparison, POLICY, champion=1)
    assert not slices.passed
    assert slices.summary.startswith("regressed beyond -0.05: m3 ")
    assert all(value not in slices.summary for value in ("m1", "m2", "m4"))


def test_a_challenger_better_everywhere_passes_comparison_and_slices() -> None:
    comparison = _comparison(None, gain=0.6)
    assert check_comparison(comparison, POLICY, champion=1).passed
    assert check_slices(comparison, POLICY, champion=1).passed


def test_an_equal_challenger_passes_non_inferiority_but_not_a_required_improvement() -> None:
    comparison = _comparison(None, gain=0.0)
    assert check_comparison(comparison, POLICY, champion=1).passed
    demanding = POLICY.model_copy(update={"min_improvement": 0.02})
    refused = check_comparison(comparison, demanding, champion=1)
    assert not refused.passed and "is below 0.02" in refused.summary


def test_without_a_champion_only_the_floors_decide() -> None:
    comparison = _comparison(None, gain=0.0)
    assert check_comparison(comparison, POLICY, champion=None).passed
    metrics = {name: result.challenger.value if result else None for name, result in comparison.overall.metrics.items()}
    assert check_floors(metrics, MetricFloors()).passed
    failed = check_floors(metrics, MetricFloors(roc_auc=0.999, brier=0.001))
    assert not failed.passed
    assert "roc_auc" in failed.summary and "brier" in failed.summary and "log_loss" not in failed.summary


@pytest.mark.parametrize(
    ("challenger", "champion", "problem"),
    [
        (Latency(p50_ms_batch_1=1, p99_ms_batch_1=80, rows_per_s_batch_256=1e6), None, "batch-1 p99 80.00 ms is over"),
        (Latency(p50_ms_batch_1=1, p99_ms_batch_1=2, rows_per_s_batch_256=5e3), None, "throughput 5,000 rows/s"),
        (
            Latency(p50_ms_batch_1=5, p99_ms_batch_1=9, rows_per_s_batch_256=1e6),
            Latency(p50_ms_batch_1=1, p99_ms_batch_1=2, rows_per_s_batch_256=1e6),
            "over 3x the champion's 2.00 ms",
        ),
    ],
)
def test_latency_fails_over_budget_or_much_slower_than_the_champion(
    challenger: Latency, champion: Latency | None, problem: str
) -> None:
    check = check_latency(challenger, champion, LatencyBudget())
    assert not check.passed and problem in check.summary


def test_sub_millisecond_differences_from_the_champion_are_noise() -> None:
    fast = Latency(p50_ms_batch_1=0.05, p99_ms_batch_1=0.1, rows_per_s_batch_256=4e6)
    slower = Latency(p50_ms_batch_1=0.2, p99_ms_batch_1=0.6, rows_per_s_batch_256=1e6)
    assert check_latency(slower, fast, LatencyBudget()).passed


def test_parity_evidence_must_be_recorded_and_passed() -> None:
    passed = {"rows": 10, "max_abs_error": 0, "max_rel_error": 0, "out_of_tolerance": 0, "decision_flips": 0}
    assert check_parity_evidence({"onnx": {"parity": {"sets": {"held-out": passed}}}}).passed
    flipped = {**passed, "decision_flips": 2}
    assert "failed on held-out" in check_parity_evidence({"onnx": {"parity": {"sets": {"held-out": flipped}}}}).summary
    assert "records no ONNX parity" in check_parity_evidence({"onnx": {}}).summary
    assert (
        "cannot be read" in check_parity_evidence({"onnx": {"parity": {"sets": {"held-out": {"rows": "x"}}}}}).summary
    )
