"""A candidate: everything a refit makes before it registers (model, evaluation, ONNX export, parity, edge variants)."""

from __future__ import annotations

from pydantic import Field

from conveyor.data.snapshots import Snapshot
from conveyor.export.edge import EdgeAccuracy, EdgeTarget, check_edge_accuracy, quantize_for_edge
from conveyor.export.families import FAMILIES, BuiltModel
from conveyor.export.onnx import OnnxModel


class Candidate(BuiltModel):
    """Everything a run made that goes into a version (bundles, which carry the version number, come apart)."""

    snapshot: Snapshot
    edge: list[tuple[OnnxModel, EdgeAccuracy]]
    edge_skipped: str | None = Field(None, description="Why the candidate has no edge variants, if it has none.")


def build_candidate(data: Snapshot, built: BuiltModel, edge_targets: list[EdgeTarget]) -> Candidate:
    """A model of either family with its edge variants: quantized and accuracy-checked per target, if it can be."""
    skipped = FAMILIES[built.family].why_no_edge
    variants = []
    if not skipped:
        holdout = built.params.holdout_fraction
        for target in edge_targets:
            variant = quantize_for_edge(built.exported, target)
            variants.append((variant, check_edge_accuracy(built.exported, variant, data, holdout, target)))
    return Candidate(**dict(built), snapshot=data, edge=variants, edge_skipped=skipped)
