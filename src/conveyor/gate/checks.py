"""The gate's checks: each turns evidence into a verdict with its numbers, named so a refusal says what failed."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from conveyor.export.onnx import SetParity
from conveyor.gate.policy import GatePolicy, LatencyBudget, MetricFloors
from conveyor.gate.scoring import Latency
from conveyor.gate.statistics import HIGHER_IS_BETTER, Comparison, MetricComparison

Figure = float | int | str | None


class GateCheck(BaseModel):
    """One check of the gate: passed or not, one sentence why, and the figures it decided on."""

    name: str
    passed: bool
    summary: str
    figures: dict[str, Figure] = Field(default_factory=dict)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _interval(result: MetricComparison | None) -> str:
    gain = result.improvement if result else None
    return f"{_fmt(gain.value)} [{_fmt(gain.lower)}, {_fmt(gain.upper)}]" if gain else "not computable"


def check_floors(metrics: dict[str, float | None], floors: MetricFloors) -> GateCheck:
    """Every metric of the challenger within its absolute floor (or ceiling, for losses)."""
    misses = []
    for metric, limit in floors.model_dump().items():
        value = metrics.get(metric)
        within = value is not None and (value >= limit if metric in HIGHER_IS_BETTER else value <= limit)
        if not within:
            bound = "below" if metric in HIGHER_IS_BETTER else "above"
            misses.append(f"{metric} {_fmt(value)} is {bound} its limit {limit:g}")
    return GateCheck(
        name="floors",
        passed=not misses,
        summary="; ".join(misses) if misses else "every metric is within its absolute limit",
        figures={**{f"challenger {k}": v for k, v in metrics.items()}, **{f"limit {k}": v for k, v in floors}},
    )


def check_comparison(comparison: Comparison, policy: GatePolicy, champion: int | None) -> GateCheck:
    """Non-inferiority and improvement on the primary metric, paired over held-out entities."""
    if champion is None:
        return GateCheck(name="champion", passed=True, summary="no production version yet: the floors alone decide")
    result = comparison.overall.metrics.get(policy.primary_metric)
    gain = result.improvement if result else None
    problems = []
    if gain is None:
        problems.append("it cannot be computed on these rows")
    else:
        if gain.lower is None or gain.lower <= -policy.margin:
            problems.append(f"the lower bound {_fmt(gain.lower)} is not above -{policy.margin:g}")
        if gain.value < policy.min_improvement:
            problems.append(f"the improvement {_fmt(gain.value)} is below {policy.min_improvement:g}")
    figures: dict[str, Figure] = {
        "metric": policy.primary_metric,
        "champion": result.champion.value if result and result.champion else None,
        "challenger": result.challenger.value if result else None,
        "improvement": gain.value if gain else None,
        "lower": gain.lower if gain else None,
        "upper": gain.upper if gain else None,
    }
    if delong := comparison.overall.delong:
        figures |= {"delong_z": delong.z, "delong_p": delong.p_value}
    verdict = "; ".join(problems) if problems else "non-inferior and improved"
    return GateCheck(
        name="champion",
        passed=not problems,
        summary=f"{policy.primary_metric} improvement over v{champion} {_interval(result)}: {verdict}",
        figures=figures,
    )


def check_slices(comparison: Comparison, policy: GatePolicy, champion: int | None) -> GateCheck:
    """No slice of the slicing column regresses on the primary metric beyond its own margin."""
    if champion is None or not comparison.slices:
        why = "no production version yet" if champion is None else "the dataset names no slice_by column"
        return GateCheck(name="slices", passed=True, summary=f"not compared: {why}")
    regressed, figures = [], {}
    for value, group in comparison.slices.items():
        result = group.metrics.get(policy.primary_metric)
        lower = result.improvement.lower if result and result.improvement else None
        figures[f"{value} lower"] = lower
        if lower is not None and lower <= -policy.slice_margin:
            regressed.append(f"{value} {_interval(result)}")
    summary = (
        f"regressed beyond -{policy.slice_margin:g}: {', '.join(regressed)}"
        if regressed
        else f"no slice regresses beyond -{policy.slice_margin:g}"
    )
    return GateCheck(name="slices", passed=not regressed, summary=summary, figures=figures)


def check_known_inputs(rows: int, max_error: float, atol: float) -> GateCheck:
    """The challenger reproduces the outputs stored with it on its known inputs."""
    passed = rows > 0 and max_error <= atol
    return GateCheck(
        name="known inputs",
        passed=passed,
        summary=f"{rows} known inputs, largest difference from the stored outputs {max_error:.2e} (limit {atol:g})",
        figures={"rows": rows, "max_abs_error": max_error, "atol": atol},
    )


def check_parity_evidence(manifest: dict[str, Any]) -> GateCheck:
    """The version's ONNX parity evidence is recorded and passed on every row set."""
    recorded = (
        manifest.get("onnx", {}).get("parity", {}).get("sets") if isinstance(manifest.get("onnx"), dict) else None
    )
    if not isinstance(recorded, dict) or not recorded:
        return GateCheck(name="parity", passed=False, summary="the version records no ONNX parity evidence")
    try:
        sets = {name: SetParity.model_validate(value) for name, value in recorded.items()}
    except ValidationError:
        return GateCheck(name="parity", passed=False, summary="the version's parity evidence cannot be read")
    failed = [name for name, result in sets.items() if not result.passed]
    return GateCheck(
        name="parity",
        passed=not failed,
        summary=f"parity failed on {', '.join(failed)}" if failed else f"parity passed on {', '.join(sets)}",
        figures={f"{name} max_abs_error": result.max_abs_error for name, result in sets.items()},
    )


def _batch_ms(latency: Latency) -> float:
    return 256_000 / latency.rows_per_s_batch_256


def check_latency(challenger: Latency, champion: Latency | None, budget: LatencyBudget) -> GateCheck:
    """Batch-1 p99 and batch-256 throughput within budget, and not much slower than the champion (beyond noise)."""
    problems = []
    if challenger.p99_ms_batch_1 > budget.p99_ms_batch_1:
        problems.append(f"batch-1 p99 {challenger.p99_ms_batch_1:.2f} ms is over {budget.p99_ms_batch_1:g} ms")
    if challenger.rows_per_s_batch_256 < budget.rows_per_s_batch_256:
        problems.append(
            f"batch-256 throughput {challenger.rows_per_s_batch_256:,.0f} rows/s is under "
            f"{budget.rows_per_s_batch_256:,.0f}"
        )
    if champion is not None:
        if challenger.p99_ms_batch_1 > budget.max_slowdown * champion.p99_ms_batch_1 + budget.slack_ms:
            problems.append(
                f"batch-1 p99 {challenger.p99_ms_batch_1:.2f} ms is over {budget.max_slowdown:g}x the champion's "
                f"{champion.p99_ms_batch_1:.2f} ms"
            )
        if _batch_ms(challenger) > budget.max_slowdown * _batch_ms(champion) + budget.slack_ms:
            problems.append(
                f"a batch of 256 takes {_batch_ms(challenger):.2f} ms, over {budget.max_slowdown:g}x the champion's "
                f"{_batch_ms(champion):.2f} ms"
            )
    figures: dict[str, Figure] = {f"challenger {k}": v for k, v in challenger.model_dump().items()}
    if champion is not None:
        figures |= {f"champion {k}": v for k, v in champion.model_dump().items()}
    summary = "; ".join(problems) or (
        f"batch-1 p99 {challenger.p99_ms_batch_1:.2f} ms, {challenger.rows_per_s_batch_256:,.0f} rows/s at batch 256"
        f" on {budget.threads} thread(s)"
    )
    return GateCheck(name="latency", passed=not problems, summary=summary, figures=figures)
