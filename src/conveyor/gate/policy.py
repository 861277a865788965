"""What a challenger must show to be promoted: the gate's thresholds, one typed form in the UI."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

PrimaryMetric = Literal["roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"]


class MetricFloors(BaseModel):
    """Absolute limits every version must meet on the held-out rows, whatever the champion does."""

    roc_auc: float = Field(0.6, ge=0, le=1, description="Lowest ROC AUC accepted.")
    pr_auc: float = Field(0.0, ge=0, le=1, description="Lowest average precision accepted.")
    log_loss: float = Field(1.0, gt=0, description="Highest log loss accepted.")
    brier: float = Field(0.25, gt=0, description="Highest Brier score accepted.")
    calibration_error: float = Field(0.15, ge=0, description="Highest expected calibration error accepted.")


class LatencyBudget(BaseModel):
    """How fast the challenger must answer under ONNX Runtime, measured in the gate with the target's threads."""

    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads, as the serving target runs it.")
    p99_ms_batch_1: float = Field(50.0, gt=0, description="Highest batch-1 p99 latency accepted, in ms.")
    rows_per_s_batch_256: float = Field(10_000.0, gt=0, description="Lowest batch-256 throughput accepted.")
    max_slowdown: float = Field(
        3.0, ge=1, description="How many times slower than the champion (p99, throughput) the challenger may be."
    )
    slack_ms: float = Field(
        1.0, ge=0, description="Differences from the champion below this many ms are noise, not a regression."
    )
    calls: int = Field(300, ge=20, description="Batch-1 calls timed (after a warm-up).")


class GatePolicy(BaseModel):
    """The champion-versus-challenger gate: floors, a paired comparison, slices, known inputs, latency."""

    floors: MetricFloors = Field(default_factory=MetricFloors, description="Absolute limits per metric.")
    primary_metric: PrimaryMetric = Field("roc_auc", description="The metric the comparison decides on.")
    margin: float = Field(
        0.01, ge=0, description="Non-inferiority margin: the lower 95 % bound of the improvement must exceed -margin."
    )
    min_improvement: float = Field(
        0.0, ge=0, description="The improvement's point estimate must be at least this (0: not worse)."
    )
    slice_margin: float = Field(
        0.05, ge=0, description="Per slice of the dataset's slice_by column: its lower bound must exceed -margin."
    )
    resamples: int = Field(2000, ge=100, description="Paired bootstrap resamples over held-out entities.")
    confidence: float = Field(0.95, gt=0.5, lt=1, description="Confidence level of the intervals.")
    seed: int = Field(0, description="Seed of the bootstrap, so a verdict can be recomputed.")
    latency: LatencyBudget = Field(default_factory=LatencyBudget, description="Batch-1 p99 and batch-256 throughput.")
    known_inputs_atol: float = Field(
        1e-6, ge=0, description="How far the challenger's output on its known inputs may be from the stored ones."
    )
