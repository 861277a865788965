"""The telemetry dataset's spec: the default dataset, shipped with the package (schema/datasets/telemetry.yaml)."""

from __future__ import annotations

from conveyor.schema.catalog import BUILT_IN
from conveyor.schema.spec import load_spec

TELEMETRY = load_spec(BUILT_IN / "telemetry.yaml")
