"""A candidate: everything a refit makes before it registers (model, evaluation, ONNX export, parity, edge variants)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from conveyor.data.snapshots import Snapshot
from conveyor.export.edge import EdgeAccuracy, EdgeTarget, check_edge_accuracy, quantize_for_edge
from conveyor.export.onnx import OnnxModel, ParityReport, ParityThresholds, check_onnx_parity, export_onnx
from conveyor.models.cluster import ClusterSpec
from conveyor.models.evaluation import Evaluation, evaluate_model
from conveyor.models.training import TrainedModel, TrainingParams, train_model
from conveyor.schema.spec import DatasetSpec


class Candidate(BaseModel):
    """Everything a run made that goes into a version (bundles, which carry the version number, come apart)."""

    snapshot: Snapshot
    params: TrainingParams
    model: TrainedModel
    evaluation: Evaluation
    exported: OnnxModel
    parity: ParityReport
    edge: list[tuple[OnnxModel, EdgeAccuracy]]


def build_candidate(
    data: Snapshot,
    spec: DatasetSpec,
    training: TrainingParams,
    cluster: ClusterSpec | None,
    model_name: str,
    parity: ParityThresholds,
    edge_targets: list[EdgeTarget],
    production: Path | None,
) -> Candidate:
    """Train, evaluate on held-out machines, export to ONNX, check parity, quantize and check each edge target."""
    model = train_model(data, spec, training, cluster)
    evaluation = evaluate_model(model, data, training.holdout_fraction)
    exported = export_onnx(model, {"model_name": model_name, "data_sha256": data.sha256})
    checked = check_onnx_parity(exported, model, data, training.holdout_fraction, parity, production)
    variants = []
    for target in edge_targets:
        variant = quantize_for_edge(exported, target)
        variants.append((variant, check_edge_accuracy(exported, variant, data, training.holdout_fraction, target)))
    return Candidate(
        snapshot=data,
        params=training,
        model=model,
        evaluation=evaluation,
        exported=exported,
        parity=checked,
        edge=variants,
    )
