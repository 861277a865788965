"""The tune flow: a hyper-parameter search over the XGBoost baseline, its trials fanned out on Dask workers."""

from __future__ import annotations

from uuid import UUID

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from pydantic import BaseModel, Field

from conveyor.cache.report import reporting_cache_use
from conveyor.data.snapshots import Snapshot
from conveyor.flows.validate import validate
from conveyor.models.boosting import BoostingParams
from conveyor.models.cluster import ClusterSpec, task_runner
from conveyor.models.evaluation import Metrics, compare_model_families, evaluate_model
from conveyor.models.features import training_encoding
from conveyor.models.training import TrainingParams, train_model
from conveyor.models.tuning import SearchSpace, Trial, TuningMetric, record_trials, run_trial
from conveyor.schema.catalog import find_spec
from conveyor.schema.spec import DatasetSpec, FeatureEncoding

DEFAULT_BASE = BoostingParams()
DEFAULT_SPACE = SearchSpace()
# Two local workers: trials run side by side, one thread each.
DEFAULT_TUNING_CLUSTER = ClusterSpec(workers=2)


class TuningResult(BaseModel):
    """What a search tried and what won."""

    snapshot_sha256: str
    metric: str
    trials: list[Trial]
    best: int = Field(description="Index of the best trial.")
    torch: Metrics | None = Field(description="The torch model's held-out metrics, when it was trained to compare.")

    @property
    def best_trial(self) -> Trial:
        """The winning trial."""
        return self.trials[self.best]


@flow(name="tuning-trials")
def run_trials(snapshot: Snapshot, encoding: FeatureEncoding, trials: list[BoostingParams]) -> list[Trial]:
    """Submit every trial as a task to this flow's (Dask) task runner and collect them as they finish."""
    futures = [
        run_trial.with_options(task_run_name=f"trial {i}").submit(snapshot, encoding, params)
        for i, params in enumerate(trials)
    ]
    progress = create_progress_artifact(0.0, description=f"{len(trials)} tuning trials")
    assert isinstance(progress, UUID)  # the synchronous API, called from a synchronous flow
    for done, _ in enumerate(as_completed(futures), start=1):
        update_progress_artifact(progress, 100.0 * done / len(trials))
    return [future.result() for future in futures]


@flow(name="tune")
def tune(
    data: str | None = Field(
        None, description="A parquet file to tune on, checked where it lies; empty: the newest landed partition."
    ),
    snapshot: str | None = Field(None, description="SHA-256 of a snapshot in the data store; overrides data."),
    base: BoostingParams = Field(DEFAULT_BASE, description="Settings every trial shares unless the space varies them."),
    space: SearchSpace = Field(DEFAULT_SPACE, description="Values to try; every combination is one trial."),
    metric: TuningMetric = Field("roc_auc", description="Held-out metric that picks the best trial."),
    cluster: ClusterSpec = Field(
        DEFAULT_TUNING_CLUSTER, description="Dask cluster the trials fan out on: N local workers, or one by address."
    ),
    compare_torch: TrainingParams | None = Field(
        None, description="Also train the torch model with these settings and compare the families; empty: skip."
    ),
    force_recompute: bool = Field(False, description="Run every trial again instead of reusing cached results."),
    dataset: str | None = Field(
        None, description="Dataset spec by name (contract, features); empty: CONVEYOR_DATASET (telemetry)."
    ),
) -> TuningResult:
    """Search XGBoost hyper-parameters with trials on Dask workers, record the best, optionally compare with torch."""
    spec = find_spec(dataset)
    with reporting_cache_use():
        # The same gate as refit (reference, quarantine, report), without an event: nothing should react to it.
        chosen = validate(
            file=data, snapshot=snapshot, announce=False, force_recompute=force_recompute, dataset=spec.name
        )
        return _search(chosen, spec, base, space, metric, cluster, compare_torch)


def _search(
    chosen: Snapshot,
    spec: DatasetSpec,
    base: BoostingParams,
    space: SearchSpace,
    metric: TuningMetric,
    cluster: ClusterSpec,
    compare_torch: TrainingParams | None,
) -> TuningResult:
    # Prefect types with_options for its default futures; DaskTaskRunner's futures are Dask's own.
    on_dask = run_trials.with_options(task_runner=task_runner(cluster))  # type: ignore[arg-type]
    trials = on_dask(chosen, training_encoding(chosen, spec, base.holdout_fraction), space.trials(base))
    best = record_trials(trials, metric, space, chosen)
    torch_metrics = None
    if compare_torch is not None:
        model = train_model(chosen, spec, compare_torch)
        torch_metrics = evaluate_model(model, chosen, compare_torch.holdout_fraction).metrics
        compare_model_families({"xgboost (best trial)": trials[best].metrics, "torch": torch_metrics}, chosen)
    return TuningResult(snapshot_sha256=chosen.sha256, metric=metric, trials=trials, best=best, torch=torch_metrics)
