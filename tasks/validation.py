"""Data contract of landed telemetry, enforced with pandera before anything trains on it."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series
from prefect import get_run_logger, task

from tasks.data import Snapshot, read_snapshot
from tasks.synthetic import LABEL, MACHINE_MODELS

# How many failing checks the error message names; the full list is in the failure cases.
_TOP_FAILURES = 5
_COLUMN_PRESENCE_CHECKS = ("column_in_dataframe", "column_in_schema")


class DataValidationError(ValueError):
    """A batch broke the telemetry contract."""


class TelemetrySchema(pa.DataFrameModel):
    """One telemetry reading per machine and timestamp."""

    machine_id: Series[str] = pa.Field(str_matches=r"^M-\d{5}$")
    timestamp: Series[pd.Timestamp] = pa.Field()
    machine_model: Series[str] = pa.Field(isin=list(MACHINE_MODELS))
    age_days: Series[int] = pa.Field(ge=0, le=20 * 365)
    temperature: Series[float] = pa.Field(ge=-40, le=150)
    vibration: Series[float] = pa.Field(ge=0, le=20)
    pressure: Series[float] = pa.Field(ge=0, le=300)
    rpm: Series[float] = pa.Field(ge=0, le=10_000)
    voltage: Series[float] = pa.Field(ge=100, le=400)
    failure_within_7d: Series[int] = pa.Field(isin=[0, 1], alias=LABEL)

    class Config:
        """Exactly these columns, each reading once."""

        strict = True
        coerce = False
        unique = ["machine_id", "timestamp"]


def contract_violations(frame: pd.DataFrame) -> pd.DataFrame:
    """Every failing check (lazy validation), one row per check and column; empty when valid."""
    try:
        TelemetrySchema.validate(frame.astype({"machine_model": "object"}, errors="ignore"), lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        # For missing or unexpected columns the failure case is the column's name: report it as the column.
        about_columns = cases["check"].isin(_COLUMN_PRESENCE_CHECKS)
        cases["column"] = cases["column"].where(~about_columns, cases["failure_case"])
        return (
            cases.groupby(["check", "column"], dropna=False, sort=False)
            .agg(failing_rows=("index", "size"), examples=("failure_case", lambda s: list(s.astype(str).head(3))))
            .reset_index()
            .sort_values("failing_rows", ascending=False, kind="stable")
        )
    return pd.DataFrame(columns=["check", "column", "failing_rows", "examples"])


@task(name="Validate snapshot")
def validate_snapshot(snapshot: Snapshot) -> int:
    """Check a snapshot against the telemetry contract; fail naming the top violations. Returns its row count."""
    frame = read_snapshot(snapshot)
    if frame.empty:
        raise DataValidationError(f"Snapshot {snapshot.sha256[:12]} has no rows.")
    violations = contract_violations(frame)
    if not violations.empty:
        top = "; ".join(
            f"{row.check} on {row.column} ({row.failing_rows} rows)"
            for row in violations.head(_TOP_FAILURES).itertuples()
        )
        raise DataValidationError(
            f"Snapshot {snapshot.sha256[:12]} broke the telemetry contract in {len(violations)} checks: {top}."
        )
    get_run_logger().info("Snapshot %s is valid: %d rows", snapshot.sha256[:12], len(frame))
    return len(frame)
