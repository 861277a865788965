"""Training scales out with PyTorch DDP over real Dask workers, reproducibly, and survives a dying worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client

from conveyor.data.snapshots import Snapshot
from conveyor.models.cluster import ClusterSpec
from conveyor.models.evaluation import evaluate_model
from conveyor.models.training import CHECKPOINTS, TrainedModel, train_model
from conveyor.schema.telemetry import TELEMETRY
from conveyor.settings import ConveyorSettings
from tests.fixtures.models import FAST_TRAINING

TWO_RANKS = ClusterSpec(workers=2)


def _auc(model: TrainedModel, snapshot: Snapshot) -> float:
    return evaluate_model(model, snapshot, FAST_TRAINING.holdout_fraction).metrics.roc_auc


@pytest.fixture(scope="module")
def two_ranks(snapshot: Snapshot) -> TrainedModel:
    """World size 2 on a LocalCluster of two worker processes."""
    return train_model(snapshot, TELEMETRY, FAST_TRAINING, TWO_RANKS)


def test_two_ranks_match_one_rank_on_the_held_out_metric(
    two_ranks: TrainedModel, trained: TrainedModel, snapshot: Snapshot
) -> None:
    assert (two_ranks.world_size, trained.world_size) == (2, 1)
    assert two_ranks.train_rows == trained.train_rows
    assert abs(_auc(two_ranks, snapshot) - _auc(trained, snapshot)) < 0.02


def test_two_ranks_give_bit_identical_weights_run_after_run(
    two_ranks: TrainedModel, snapshot: Snapshot, recompute: None
) -> None:
    again = train_model(snapshot, TELEMETRY, FAST_TRAINING, TWO_RANKS)
    assert again.weights_path != two_ranks.weights_path  # trained anew, not reused from the cache
    assert again.weights_sha256 == two_ranks.weights_sha256


def test_every_epoch_leaves_a_checkpoint(two_ranks: TrainedModel) -> None:
    folder = Path(two_ranks.weights_path).parent / CHECKPOINTS
    assert sorted(p.name for p in folder.glob("epoch-*.json")) == [f"epoch-{e}.json" for e in range(1, 7)]
    assert json.loads((folder / "epoch-6.json").read_text())["loss"] == pytest.approx(two_ranks.final_loss)


@pytest.fixture(scope="module")
def external_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `dask scheduler` and two `dask worker` processes (with nannies), reached by address."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(scheduler_file),
             "--port", "0", "--dashboard-address", ":0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
    ]  # fmt: skip
    deadline = time.monotonic() + 60
    while not scheduler_file.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    for _ in range(2):
        started.append(
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                 "--nthreads", "1", "--dashboard-address", ":0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        )  # fmt: skip
    address = json.loads(scheduler_file.read_text())["address"]
    with Client(address) as client:
        client.wait_for_workers(2, timeout=60)
    yield address
    for process in started:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_an_existing_cluster_is_reached_by_address(
    external_cluster: str, snapshot: Snapshot, two_ranks: TrainedModel
) -> None:
    by_address = train_model(snapshot, TELEMETRY, FAST_TRAINING, ClusterSpec(workers=2, scheduler=external_cluster))
    assert by_address.weights_sha256 == two_ranks.weights_sha256


@pytest.mark.slow
def test_a_killed_worker_is_retried_from_the_last_checkpoint(
    external_cluster: str, landed_partition: Path, tmp_path: Path, settings: ConveyorSettings
) -> None:
    # The training task checkpoints into its own folder in the task cache: watch for a new epoch-2 checkpoint.
    checkpoints = f"*/*/{CHECKPOINTS}/epoch-2.json"
    outputs = settings.task_cache_dir / "outputs"
    earlier = set(outputs.glob(checkpoints))
    with Client(external_cluster) as client:
        worker_pids = list(client.run(os.getpid).values())
    args = ["train", str(landed_partition), "--workers", "2", "--scheduler", external_cluster, "--epochs", "12"]
    training = subprocess.Popen(
        [str(Path(sys.executable).parent / "conveyor"), *args, "--out", str(tmp_path), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not set(outputs.glob(checkpoints)) - earlier and time.monotonic() < deadline and training.poll() is None:
        time.sleep(0.05)
    assert set(outputs.glob(checkpoints)) - earlier, training.communicate()
    os.kill(worker_pids[1], signal.SIGKILL)
    stdout, stderr = training.communicate(timeout=600)
    assert training.returncode == 0, stderr[-3000:]
    result = json.loads(stdout)
    assert result["world_size"] == 2
    assert result["resumed_from_epoch"] >= 2
    assert "died during training; retrying from the checkpoint" in stderr
    assert result["metrics"]["roc_auc"] >= 0.8
