"""Held-out evaluation: discrimination, calibration, and a picture of both."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from conveyor.cache import Content, cached_task, task_output_dir
from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.gate.statistics import CALIBRATION_BINS, point_metrics
from conveyor.models.mlp import load_weights, predict
from conveyor.models.training import TrainedModel
from conveyor.schema.spec import FeatureEncoding


class Metrics(BaseModel):
    """How well a model predicts failures on rows it never trained on."""

    roc_auc: float = Field(description="Area under the ROC curve.")
    pr_auc: float = Field(description="Average precision (area under precision-recall).")
    log_loss: float = Field(description="Mean negative log-likelihood.")
    brier: float = Field(description="Mean squared error of the probabilities.")
    calibration_error: float = Field(description="Expected calibration error over equal-width bins.")
    holdout_rows: int
    positive_rate: float


class Evaluation(BaseModel):
    """Metrics and the plot that shows them."""

    metrics: Metrics
    plot_path: Annotated[str, Content]


def compute_metrics(labels: np.ndarray, probabilities: np.ndarray) -> Metrics:
    """Discrimination and calibration of probabilities against 0/1 labels."""
    if len(np.unique(labels)) < 2:
        raise ValueError("The held-out machines all share one label; ROC AUC is undefined. Land more machines.")
    # The promotion gate's definitions, so its numbers equal the ones recorded here.
    return Metrics(**point_metrics(labels, probabilities), holdout_rows=len(labels), positive_rate=float(labels.mean()))


def plot_evaluation(labels: np.ndarray, probabilities: np.ndarray, metrics: Metrics, path: Path) -> Path:
    """ROC curve and reliability diagram side by side, as a PNG."""
    # The object API needs no display and no global pyplot state.
    fig = Figure(figsize=(10, 4.5))
    roc_ax, cal_ax = fig.subplots(1, 2)
    fpr, tpr, _ = roc_curve(labels, probabilities)
    roc_ax.plot(fpr, tpr, label=f"ROC AUC {metrics.roc_auc:.3f}")
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC on held-out machines")
    roc_ax.legend(loc="lower right")
    observed, predicted = calibration_curve(labels, probabilities, n_bins=CALIBRATION_BINS)
    cal_ax.plot(predicted, observed, marker="o", label=f"ECE {metrics.calibration_error:.3f}")
    cal_ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    cal_ax.set(xlabel="predicted failure probability", ylabel="observed failure rate", title="Calibration")
    cal_ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


@cached_task("Evaluate on held-out entities")
def evaluate_model(model: TrainedModel, snapshot: Snapshot, holdout_fraction: float) -> Evaluation:
    """Score the held-out split: ROC AUC, PR AUC, log loss, Brier score and calibration."""
    encoding = model.encoding
    _, holdout = split_holdout(read_snapshot(snapshot), holdout_fraction, encoding.entity)
    probabilities = predict(load_weights(Path(model.weights_path), model.hidden_units, encoding), holdout, encoding)
    return publish_evaluation(holdout, probabilities, snapshot, encoding)


def publish_evaluation(
    holdout: pd.DataFrame, probabilities: np.ndarray, snapshot: Snapshot, encoding: FeatureEncoding
) -> Evaluation:
    """Metrics, plot (in the running task's folder), artifact and log line of any model's held-out probabilities."""
    labels = holdout[encoding.label].to_numpy(dtype=float)
    metrics = compute_metrics(labels, probabilities)
    plot = plot_evaluation(labels, probabilities, metrics, task_output_dir() / "evaluation.png")
    create_table_artifact(
        [{"metric": name, "value": round(value, 4)} for name, value in metrics.model_dump().items()],
        key="held-out-metrics",
        description=f"Held-out metrics of the model trained on snapshot {snapshot.sha256[:12]}",
    )
    get_run_logger().info("held-out ROC AUC %.3f, PR AUC %.3f", metrics.roc_auc, metrics.pr_auc)
    return Evaluation(metrics=metrics, plot_path=str(plot))


@cached_task("Compare model families")
def compare_model_families(evaluated: dict[str, Metrics], snapshot: Snapshot) -> list[dict[str, str | float]]:
    """One table of every family's held-out metrics; fails if they were not scored on the same held-out rows."""
    if len({metrics.holdout_rows for metrics in evaluated.values()}) > 1:
        raise ValueError(
            "The model families were scored on different held-out rows; give them the same holdout_fraction."
        )
    table: list[dict[str, str | float]] = [
        {"model": name, **{key: round(value, 4) for key, value in metrics.model_dump().items()}}
        for name, metrics in evaluated.items()
    ]
    create_table_artifact(
        table,
        key="model-families",
        description=f"Model families on the same held-out machines of snapshot {snapshot.sha256[:12]}",
    )
    get_run_logger().info("held-out ROC AUC: %s", ", ".join(f"{name} {m.roc_auc:.4f}" for name, m in evaluated.items()))
    return table
