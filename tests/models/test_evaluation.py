"""Evaluation reports discrimination and calibration on machines the model never saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conveyor.data.snapshots import Snapshot
from conveyor.gate.statistics import METRICS, point_metrics
from conveyor.models.evaluation import compute_metrics, evaluate_model
from conveyor.models.training import TrainedModel
from tests.fixtures.models import FAST_TRAINING


def test_trained_model_separates_failing_machines(trained: TrainedModel, snapshot: Snapshot) -> None:
    evaluation = evaluate_model(trained, snapshot, FAST_TRAINING.holdout_fraction)
    assert evaluation.metrics.roc_auc >= 0.8
    assert evaluation.metrics.pr_auc > evaluation.metrics.positive_rate
    assert evaluation.metrics.calibration_error < 0.1
    assert Path(evaluation.plot_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metrics_of_a_perfect_and_a_coin_flip_model() -> None:
    labels = np.array([0, 0, 1, 1] * 250, dtype=float)
    perfect = compute_metrics(labels, np.where(labels == 1, 0.99, 0.01))
    assert perfect.roc_auc == 1.0
    assert perfect.pr_auc == 1.0
    coin = compute_metrics(labels, np.full(len(labels), 0.5))
    assert coin.roc_auc == 0.5
    assert coin.log_loss == pytest.approx(np.log(2))
    assert coin.calibration_error == pytest.approx(0.0)


def test_one_class_holdout_is_explained() -> None:
    with pytest.raises(ValueError, match="one label"):
        compute_metrics(np.zeros(10), np.full(10, 0.1))


def test_recorded_metrics_are_the_gates() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(500) < 0.3).astype(float)
    probabilities = np.clip(0.3 * labels + 0.7 * rng.random(500), 0, 1).astype(np.float32)
    recorded = compute_metrics(labels, probabilities)
    assert recorded.model_dump(include=set(METRICS)) == point_metrics(labels, probabilities)
