"""The edge-check flow: time a registered edge bundle on the device it targets."""

from __future__ import annotations

from prefect import flow
from pydantic import Field, PositiveInt

from conveyor.blocks import ConveyorStores
from conveyor.export.edge import LatencyBudget, LatencyReport, measure_latency
from conveyor.io.files import FolderName
from conveyor.registry.storage import ModelStore
from conveyor.registry.store import find_edge_bundle
from conveyor.schema.catalog import find_spec

DEFAULT_BUDGET = LatencyBudget()


@flow(name="edge-check")
def edge_check(
    model_name: FolderName | None = Field(None, description="Registry name of the model; empty: the dataset's."),
    version: PositiveInt | None = Field(None, description="Version to check; empty: the newest."),
    target: str = Field("gateway", description="Edge target whose bundle to time, e.g. gateway."),
    budget: LatencyBudget = Field(DEFAULT_BUDGET, description="Latency and throughput the target must reach."),
    dataset: str | None = Field(None, description="Dataset spec whose model to check; empty: CONVEYOR_DATASET."),
) -> LatencyReport:
    """Verify a version's edge bundle and measure p50/p95/p99 latency and throughput with the target's threads."""
    stores = ConveyorStores.resolve()
    name = model_name or find_spec(dataset).model_name
    return measure_latency(find_edge_bundle(ModelStore.of(stores), name, version, target), budget)
