"""The tune flow fans XGBoost trials out on Dask workers, records them all and picks the best by the metric."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from distributed import Client, LocalCluster
from prefect.client.schemas.objects import State

from conveyor.data.snapshots import Snapshot
from conveyor.flows.tune import TuningResult, tune
from conveyor.models.boosting import BoostingParams
from conveyor.models.cluster import ClusterSpec
from conveyor.models.training import TrainingParams
from conveyor.models.tuning import SearchSpace
from tests.fixtures.server import flow_run_artifacts

BASE = BoostingParams(rounds=30)
TWO_DEPTHS = SearchSpace(max_depth=[1, 4], learning_rate=[0.1])


def _tune(**kwargs: Any) -> State:
    state = tune(base=BASE, space=TWO_DEPTHS, return_state=True, **kwargs)
    assert isinstance(state, State)
    return state


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Client]:
    """Two worker processes of a Dask cluster the flow reaches by address."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def by_address(dask_cluster: Client, snapshot: Snapshot) -> tuple[State, TuningResult]:
    state = _tune(
        snapshot=snapshot.sha256, cluster=ClusterSpec(workers=2, scheduler=dask_cluster.scheduler_info()["address"])
    )
    assert state.is_completed(), state.message
    result = state.result()
    assert isinstance(result, TuningResult)
    return state, result


def test_every_trial_runs_as_a_task_on_the_dask_workers(
    by_address: tuple[State, TuningResult], dask_cluster: Client
) -> None:
    _, result = by_address
    assert [t.params.max_depth for t in result.trials] == [1, 4]
    executed = dask_cluster.run(lambda dask_worker: dask_worker.state.executed_count)
    assert sum(executed.values()) >= len(result.trials)


def test_the_best_trial_is_the_one_with_the_highest_roc_auc_and_all_are_recorded(
    by_address: tuple[State, TuningResult],
) -> None:
    state, result = by_address
    aucs = [t.metrics.roc_auc for t in result.trials]
    assert aucs[0] != aucs[1]
    assert result.best == aucs.index(max(aucs))
    assert result.best_trial.metrics.roc_auc > 0.9
    table = flow_run_artifacts(str(state.state_details.flow_run_id))["tuning-trials"]
    assert f"best by roc_auc: trial {result.best}" in table["description"]
    rows = json.loads(table["data"])
    assert [row["best"] for row in rows] == ["yes" if i == result.best else "" for i in range(len(result.trials))]
    assert [row["roc_auc"] for row in rows] == [round(auc, 4) for auc in aucs]


@pytest.mark.slow
def test_a_local_cluster_by_default_picks_by_log_loss_and_compares_with_torch(
    by_address: tuple[State, TuningResult], landed_partition: Path, recompute: None
) -> None:
    state = _tune(data=str(landed_partition), metric="log_loss", compare_torch=TrainingParams(epochs=2))
    assert state.is_completed(), state.message
    result = state.result()
    losses = [t.metrics.log_loss for t in result.trials]
    assert result.best == losses.index(min(losses))
    # A trial is a function of (snapshot, params): the same trial on another cluster trains the same trees.
    assert [t.model_sha256 for t in result.trials] == [t.model_sha256 for t in by_address[1].trials]
    assert result.torch is not None
    assert result.torch.holdout_rows == result.best_trial.metrics.holdout_rows
    families = json.loads(flow_run_artifacts(str(state.state_details.flow_run_id))["model-families"]["data"])
    assert [row["model"] for row in families] == ["xgboost (best trial)", "torch"]
    assert families[1]["roc_auc"] == round(result.torch.roc_auc, 4)


def test_a_value_outside_its_range_fails_the_run_naming_it(snapshot: Snapshot) -> None:
    state = tune(snapshot=snapshot.sha256, base=BASE, space=SearchSpace(max_depth=[0]), return_state=True)
    assert state.is_failed()
    assert "max_depth" in str(state.message)
