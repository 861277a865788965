"""The train flow trains, evaluates and exports either model family, and copies its model file where asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.schemas.objects import State

from conveyor.blocks import ConveyorStores
from conveyor.export.families import ModelFamily
from conveyor.flows.train import TrainingRun, train
from conveyor.io.files import sha256_file
from conveyor.models.boosting import BOOSTER_FILE
from conveyor.models.training import WEIGHTS_FILE
from tests.fixtures.models import FAST_BOOSTING, FAST_TRAINING


@pytest.mark.parametrize(("family", "model_file"), [("torch", WEIGHTS_FILE), ("xgboost", BOOSTER_FILE)])
def test_train_keeps_either_familys_model_file_beside_its_evaluation(
    family: ModelFamily, model_file: str, landed_partition: Path, stores: ConveyorStores, tmp_path: Path
) -> None:
    state = train(
        data=str(landed_partition),
        family=family,
        training=FAST_TRAINING,
        boosting=FAST_BOOSTING,
        out=str(tmp_path),
        return_state=True,
    )
    assert isinstance(state, State)
    assert state.is_completed(), state.message
    run = state.result()
    assert isinstance(run, TrainingRun)
    assert (run.family, run.weights_path) == (family, str(tmp_path / model_file))
    assert run.weights_sha256 == sha256_file(tmp_path / model_file)
    assert (tmp_path / "evaluation.png").is_file()
    assert (run.world_size, run.resumed_from_epoch) == (1, None)
    assert run.metrics.roc_auc > 0.8
    assert Path(run.onnx_path).is_file()
