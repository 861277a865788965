"""Model families: the one table of which tasks train, evaluate, export and parity-check each family.

Everything else is shared: the train and refit flows build a model of either family with ``build_model``, and the
registry keeps its model file under the name the table gives.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field

from conveyor.data.snapshots import Snapshot
from conveyor.export.onnx import OnnxModel, ParityReport, ParityThresholds, check_onnx_parity, export_onnx
from conveyor.export.xgboost import check_xgboost_parity, export_xgboost
from conveyor.models.boosting import BOOSTER_FILE, BoostedModel, BoostingParams, evaluate_xgboost, train_xgboost
from conveyor.models.cluster import ClusterSpec
from conveyor.models.evaluation import Evaluation, evaluate_model
from conveyor.models.training import WEIGHTS_FILE, TrainedModel, TrainingParams, train_model
from conveyor.schema.spec import DatasetSpec

ModelFamily = Literal["torch", "xgboost"]

ParamsT = TypeVar("ParamsT", TrainingParams, BoostingParams)
ModelT = TypeVar("ModelT", TrainedModel, BoostedModel)


class BuiltModel(BaseModel):
    """A model of either family: trained, evaluated on held-out entities, exported to ONNX, its parity checked."""

    family: ModelFamily
    dataset: str = Field(description="The dataset spec it was trained on, by name.")
    params: TrainingParams | BoostingParams = Field(description="The family's training settings.")
    model: TrainedModel | BoostedModel = Field(description="The trainer's record: model file, rows, loss, ranks.")
    evaluation: Evaluation
    exported: OnnxModel
    parity: ParityReport


# repr shows only the plain fields (no task objects): registration's cache key fingerprints FAMILIES by its repr.
@dataclasses.dataclass(frozen=True)
class Family(Generic[ParamsT, ModelT]):
    """One family's tasks, the settings it trains with, and what a version keeps of it."""

    settings: Callable[[TrainingParams, BoostingParams], ParamsT] = dataclasses.field(repr=False)
    train: Callable[[Snapshot, DatasetSpec, ParamsT, ClusterSpec | None], ModelT] = dataclasses.field(repr=False)
    evaluate: Callable[[ModelT, Snapshot, float], Evaluation] = dataclasses.field(repr=False)
    export: Callable[[ModelT, dict[str, str]], OnnxModel] = dataclasses.field(repr=False)
    check_parity: Callable[[OnnxModel, ModelT, Snapshot, float, ParityThresholds, Path | None], ParityReport] = (
        dataclasses.field(repr=False)
    )
    model_file: str  # the model file's name in a registered version
    why_no_edge: str | None  # why the family gets no edge variants; None: it gets them

    def build(
        self,
        family: ModelFamily,
        params: ParamsT,
        data: Snapshot,
        spec: DatasetSpec,
        cluster: ClusterSpec | None,
        parity: ParityThresholds,
        production: Path | None,
        metadata: dict[str, str],
    ) -> BuiltModel:
        """Train, evaluate on held-out entities, export to ONNX and check its parity with the trained model."""
        model = self.train(data, spec, params, cluster)
        evaluation = self.evaluate(model, data, params.holdout_fraction)
        exported = self.export(model, metadata)
        checked = self.check_parity(exported, model, data, params.holdout_fraction, parity, production)
        return BuiltModel(
            family=family,
            dataset=spec.name,
            params=params,
            model=model,
            evaluation=evaluation,
            exported=exported,
            parity=checked,
        )


def _use_training(training: TrainingParams, _: BoostingParams) -> TrainingParams:
    return training


def _use_boosting(_: TrainingParams, boosting: BoostingParams) -> BoostingParams:
    return boosting


# Checked with onnxruntime 1.32: quantize_dynamic returns a tree ensemble's graph unchanged, with no int8 tensor in it.
_WHY_NO_INT8 = (
    "ONNX Runtime's int8 quantization has no tree-ensemble kernel (it quantizes MatMul, Conv, Gather and the like), "
    "so an int8 variant of the XGBoost graph would be the fp32 graph under an int8 label"
)

# Per family: the settings it trains with; its train, evaluate, export and parity tasks; its model file's name in a
# version; why it has no edge variants (None: it has).
FAMILIES: dict[ModelFamily, Family[Any, Any]] = {
    "torch": Family(_use_training, train_model, evaluate_model, export_onnx, check_onnx_parity, WEIGHTS_FILE, None),
    "xgboost": Family(
        _use_boosting, train_xgboost, evaluate_xgboost, export_xgboost, check_xgboost_parity, BOOSTER_FILE, _WHY_NO_INT8
    ),
}


def build_model(
    data: Snapshot,
    spec: DatasetSpec,
    family: ModelFamily,
    training: TrainingParams,
    boosting: BoostingParams,
    cluster: ClusterSpec | None,
    parity: ParityThresholds,
    production: Path | None,
    metadata: dict[str, str],
) -> BuiltModel:
    """Train a model of the family with its settings, evaluate it, export it to ONNX and check the export's parity."""
    chosen = FAMILIES[family]
    return chosen.build(family, chosen.settings(training, boosting), data, spec, cluster, parity, production, metadata)
