"""The telemetry dataset: one reading per machine and timestamp, labelled with a failure within seven days."""

from __future__ import annotations

import datetime as dt

MACHINE_MODELS = ("TX-100", "TX-200", "VX-300", "HX-400")
SENSORS = ("temperature", "vibration", "pressure", "rpm", "voltage")
LABEL = "failure_within_7d"
ENTITY = "machine_id"
EVENT_TIME = "timestamp"
NUMERIC_FEATURES = ("age_days", *SENSORS)
CATEGORY_FEATURE = "machine_model"
PARTITION_PREFIX = "telemetry-"


def partition_name(day: dt.date) -> str:
    """File name of the landing partition of one day."""
    return f"{PARTITION_PREFIX}{day.isoformat()}.parquet"
