"""The validation steps as Prefect tasks: judge a snapshot, publish its report, announce it, stop on bad data."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from conveyor.cache import cached_task, task_output_dir, uncached_task
from conveyor.data.snapshots import Snapshot
from conveyor.events import emit_validation
from conveyor.schema.spec import DatasetSpec
from conveyor.validation.check import check_batch
from conveyor.validation.report import DATA_DOCS, REPORT_MARKDOWN, TABLE_ROWS, ValidationReport, write_report


class DataValidationError(ValueError):
    """A batch broke its dataset's contract."""


@cached_task("Validate snapshot")
def validate_snapshot(snapshot: Snapshot, spec: DatasetSpec, reference: Snapshot | None = None) -> ValidationReport:
    """Check a batch against its dataset's contract with pandera and Great Expectations, and against the reference."""
    docs = task_output_dir() / DATA_DOCS
    report = check_batch(snapshot, spec, reference, docs).model_copy(update={"data_docs": str(docs)})
    get_run_logger().info(report.summary())
    return report


@uncached_task("Publish validation report", why="publishes this run's report and artifacts")
def publish_report(report: ValidationReport, folder: Path) -> ValidationReport:
    """Write the report and its Data Docs into ``folder``, and show it as table and markdown artifacts."""
    published = write_report(report, folder)
    create_table_artifact(
        table=published.table()[:TABLE_ROWS],
        key="validation-checks",
        description=f"{published.name}: failing checks and statistics warnings",
    )
    create_markdown_artifact(markdown=published.markdown(), key="validation-report", description=published.summary())
    get_run_logger().info("Validation report: %s", folder / REPORT_MARKDOWN)
    return published


@uncached_task("Announce validation result", why="emits events")
def announce_validation(snapshot: Snapshot, report: ValidationReport) -> None:
    """Emit conveyor.validation.passed or .failed for the snapshot, for automations to react to."""
    emit_validation(
        report.passed,
        snapshot.sha256,
        snapshot.source,
        report.dataset,
        {
            "rows": report.rows,
            "summary": report.summary(),
            "failed_checks": len(report.violations),
            "warnings": len(report.warnings),
            "report": report.report_dir,
        },
    )


@cached_task("Stop on invalid data")
def require_valid(report: ValidationReport) -> int:
    """Fail, naming the top violations, unless the snapshot passed; returns its row count."""
    if not report.passed:
        raise DataValidationError(report.summary())
    return report.rows
