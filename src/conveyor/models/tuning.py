"""Hyper-parameter search over the XGBoost baseline: the trials, one trial's run, and the record of the best."""

from __future__ import annotations

import hashlib
import itertools
import time
from typing import Annotated, Literal, get_args

from prefect import get_run_logger
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from conveyor.cache import Descriptive, cached_task
from conveyor.data.snapshots import Snapshot, read_snapshot, split_holdout
from conveyor.gate.statistics import HIGHER_IS_BETTER
from conveyor.models.boosting import BoostingParams, fit_booster, predict_booster
from conveyor.models.evaluation import Metrics, compute_metrics
from conveyor.schema.spec import FeatureEncoding

TuningMetric = Literal["roc_auc", "pr_auc", "log_loss", "brier", "calibration_error"]


class SearchSpace(BaseModel):
    """Values to try for each hyper-parameter; every combination is one trial, the rest comes from the base."""

    max_depth: list[int] = Field([3, 6], min_length=1, description="Tree depths to try.")
    learning_rate: list[float] = Field([0.05, 0.2], min_length=1, description="Shrinkage values to try.")
    min_child_weight: list[float] = Field([100.0], min_length=1, description="Least leaf hessian sums to try.")
    subsample: list[float] = Field([0.8], min_length=1, description="Row sampling shares to try.")

    def trials(self, base: BoostingParams) -> list[BoostingParams]:
        """Every combination applied to the base; a value outside a parameter's range fails here, naming it."""
        names = list(type(self).model_fields)
        return [
            BoostingParams.model_validate(base.model_dump() | dict(zip(names, values, strict=True)))
            for values in itertools.product(*(getattr(self, name) for name in names))
        ]


class Trial(BaseModel):
    """One point of a hyper-parameter search and how it scored on held-out machines."""

    params: BoostingParams
    metrics: Metrics
    model_sha256: str = Field(description="SHA-256 of the trained booster's JSON: equal inputs give an equal hash.")
    wall_s: Annotated[float, Descriptive]


@cached_task("Run tuning trial")
def run_trial(snapshot: Snapshot, encoding: FeatureEncoding, params: BoostingParams) -> Trial:
    """Train one candidate in this process and score it on held-out machines; writes no files."""
    started = time.perf_counter()
    # One thread: trials run side by side, and a fixed thread count makes the result a function of
    # (snapshot, params) alone, wherever the trial lands.
    booster, _ = fit_booster(snapshot.path, encoding, params, threads=1)
    _, holdout = split_holdout(read_snapshot(snapshot), params.holdout_fraction, encoding.entity)
    probabilities = predict_booster(booster, holdout, encoding)
    metrics = compute_metrics(holdout[encoding.label].to_numpy(dtype=float), probabilities)
    get_run_logger().info("held-out ROC AUC %.4f, log loss %.4f", metrics.roc_auc, metrics.log_loss)
    return Trial(
        params=params,
        metrics=metrics,
        model_sha256=hashlib.sha256(bytes(booster.save_raw("json"))).hexdigest(),
        wall_s=time.perf_counter() - started,
    )


def best_trial(trials: list[Trial], metric: TuningMetric) -> int:
    """Index of the best trial by the metric (the first of equals)."""
    sign = -1.0 if metric in HIGHER_IS_BETTER else 1.0
    return min(range(len(trials)), key=lambda i: sign * getattr(trials[i].metrics, metric))


@cached_task("Record tuning trials")
def record_trials(trials: list[Trial], metric: TuningMetric, space: SearchSpace, snapshot: Snapshot) -> int:
    """Table of every trial (what it varied, its held-out metrics) with the best marked; returns the best's index."""
    best = best_trial(trials, metric)
    varied = list(type(space).model_fields)
    create_table_artifact(
        [
            {
                "trial": i,
                "best": "yes" if i == best else "",
                **{name: getattr(trial.params, name) for name in varied},
                **{
                    name: round(value, 4)
                    for name, value in trial.metrics.model_dump().items()
                    if name in get_args(TuningMetric)
                },
                "seconds": round(trial.wall_s, 2),
            }
            for i, trial in enumerate(trials)
        ],
        key="tuning-trials",
        description=f"{len(trials)} XGBoost trials on snapshot {snapshot.sha256[:12]}; best by {metric}: trial {best}",
    )
    chosen = trials[best]
    get_run_logger().info(
        "best of %d trials by %s: trial %d (%.4f) with %s",
        len(trials),
        metric,
        best,
        getattr(chosen.metrics, metric),
        ", ".join(f"{name}={getattr(chosen.params, name)}" for name in varied),
    )
    return best
