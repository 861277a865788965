"""Data contract of landed telemetry, enforced with pandera before anything trains on it."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors
from pandera.typing import Series
from prefect import get_run_logger, task
from pydantic import BaseModel

from tasks.data import Snapshot, read_snapshot
from tasks.events import emit_validation
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
        cases["column"] = cases["column"].where(~about_columns, cases["failure_case"]).fillna("(whole table)")
        return (
            cases.groupby(["check", "column"], dropna=False, sort=False)
            .agg(failing_rows=("index", "size"), examples=("failure_case", lambda s: [str(v) for v in s.head(3)]))
            .reset_index()
            .sort_values("failing_rows", ascending=False, kind="stable")
        )
    return pd.DataFrame(columns=["check", "column", "failing_rows", "examples"])


class Violation(BaseModel):
    """One failing check on one column."""

    check: str
    column: str
    failing_rows: int
    examples: list[str]


class ValidationReport(BaseModel):
    """The verdict on one snapshot and every check it failed."""

    snapshot_sha256: str
    rows: int
    violations: list[Violation]

    @property
    def passed(self) -> bool:
        """Whether the snapshot honours the contract."""
        return self.rows > 0 and not self.violations

    def summary(self) -> str:
        """One sentence naming the verdict and the top failures."""
        name = f"Snapshot {self.snapshot_sha256[:12]}"
        if self.passed:
            return f"{name} is valid: {self.rows} rows."
        if self.rows == 0:
            return f"{name} has no rows."
        top = "; ".join(f"{v.check} on {v.column} ({v.failing_rows} rows)" for v in self.violations[:_TOP_FAILURES])
        return f"{name} broke the telemetry contract in {len(self.violations)} checks: {top}."


@task(name="Validate snapshot")
def validate_snapshot(snapshot: Snapshot) -> ValidationReport:
    """Check a snapshot against the telemetry contract and report every failing check."""
    frame = read_snapshot(snapshot)
    violations = contract_violations(frame) if len(frame) else pd.DataFrame()
    report = ValidationReport(
        snapshot_sha256=snapshot.sha256,
        rows=len(frame),
        violations=[Violation.model_validate(row) for row in violations.to_dict("records")],
    )
    get_run_logger().info(report.summary())
    return report


@task(name="Announce validation result")
def announce_validation(snapshot: Snapshot, report: ValidationReport) -> None:
    """Emit conveyor.validation.passed or .failed for the snapshot, for automations to react to."""
    emit_validation(
        report.passed,
        snapshot.sha256,
        snapshot.source,
        {"rows": report.rows, "summary": report.summary(), "failed_checks": len(report.violations)},
    )


@task(name="Stop on invalid data")
def require_valid(report: ValidationReport) -> int:
    """Fail, naming the top violations, unless the snapshot passed; returns its row count."""
    if not report.passed:
        raise DataValidationError(report.summary())
    return report.rows
