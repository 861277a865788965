"""The verdict on one batch: every failing check of either engine, statistics warnings, as JSON and markdown."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel

from conveyor.cache import Content
from conveyor.io.files import publish_folder, write_text_atomically
from conveyor.validation.statistics import StatisticWarning

# How many failing checks the error message names; the full list is in the report.
_TOP_FAILURES = 5
# Rows of the table artifact; a very wide batch can fail thousands of column checks.
TABLE_ROWS = 200
REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
DATA_DOCS = "data-docs"


class Violation(BaseModel):
    """One failing check on one column, as one engine saw it."""

    engine: str = "pandera"
    check: str
    column: str
    failing_rows: int
    examples: list[str]


class ValidationReport(BaseModel):
    """The verdict on one batch: every check it failed, and the statistics worth a look."""

    snapshot_sha256: str
    source: str = ""
    dataset: str = "telemetry"
    rows: int
    readable: bool = True
    violations: list[Violation]
    warnings: list[StatisticWarning] = []
    reference_sha256: str | None = None
    report_dir: str | None = None
    data_docs: Annotated[str | None, Content] = None

    @property
    def passed(self) -> bool:
        """Whether the batch honours the contract in both engines."""
        return self.readable and self.rows > 0 and not self.violations

    def engine_passed(self, engine: str) -> bool:
        """Whether one engine found nothing wrong."""
        return self.readable and not any(v.engine == engine for v in self.violations)

    @property
    def name(self) -> str:
        """How messages name the batch: its file and the start of its hash."""
        return f"Batch {Path(self.source).name or 'snapshot'} ({self.snapshot_sha256[:12]})"

    def summary(self) -> str:
        """One sentence naming the verdict and the top failures."""
        if not self.readable:
            return f"{self.name} cannot be read: {self.violations[0].examples[0]}"
        if self.passed:
            drift = f" {len(self.warnings)} statistics warnings: {self._warnings_text()}." if self.warnings else ""
            return f"{self.name} is valid: {self.rows} rows.{drift}"
        if self.rows == 0:
            return f"{self.name} has no rows."
        top = "; ".join(f"{v.check} on {v.column} ({v.failing_rows} rows)" for v in self.violations[:_TOP_FAILURES])
        return f"{self.name} broke the {self.dataset} contract in {len(self.violations)} checks: {top}."

    def _warnings_text(self) -> str:
        return "; ".join(f"{w.statistic} of {w.column} {w.value:.3f} > {w.threshold}" for w in self.warnings)

    def table(self) -> list[dict[str, object]]:
        """Rows of the table artifact: every failure, then every warning."""
        rows: list[dict[str, object]] = [
            {"kind": "failure", "engine": v.engine, "check": v.check, "column": v.column,
             "failing rows": v.failing_rows, "examples": ", ".join(v.examples)}
            for v in self.violations
        ]  # fmt: skip
        rows += [
            {"kind": "warning", "engine": "statistics", "check": f"{w.statistic} > {w.threshold}", "column": w.column,
             "failing rows": "", "examples": f"{w.value:.4f}"}
            for w in self.warnings
        ]  # fmt: skip
        return rows or [{"kind": "pass", "engine": "pandera, great_expectations", "check": "all", "column": "",
                         "failing rows": 0, "examples": ""}]  # fmt: skip

    def markdown(self) -> str:
        """The report a person reads: verdict, both engines, failures, statistics, where the files are."""
        verdict = "PASSED" if self.passed else "FAILED"
        engines = ", ".join(
            f"{e} {'passed' if self.engine_passed(e) else 'failed'}" for e in ("pandera", "great_expectations")
        )
        lines = [
            f"# Validation {verdict}: {self.name}",
            "",
            self.summary(),
            "",
            f"- source: `{self.source}`",
            f"- sha256: `{self.snapshot_sha256}`",
            f"- rows: {self.rows}",
            f"- engines: {engines}",
            f"- reference: {f'`{self.reference_sha256}`' if self.reference_sha256 else 'none (no model registered)'}",
        ]
        if self.report_dir:
            lines.append(f"- report: `{self.report_dir}`")
        if self.data_docs:
            lines.append(f"- Great Expectations Data Docs: `{self.data_docs}/index.html`")
        lines += ["", "| kind | engine | check | column | failing rows | examples |", "|---|---|---|---|---|---|"]
        cells = [[str(v).replace("|", "\\|").replace("\n", " ") for v in row.values()] for row in self.table()]
        lines += ["| " + " | ".join(c) + " |" for c in cells[:TABLE_ROWS]]
        return "\n".join(lines) + "\n"


class ReportWriteError(OSError):
    """A validation report could not be written (a full disk, no permission); nothing of it was left behind."""


def write_report(report: ValidationReport, folder: Path) -> ValidationReport:
    """Write report.json, report.md and the Data Docs rendered so far into ``folder``; returns the report naming it.

    The report is built beside ``folder`` and moved in whole, so a failure (a full disk) leaves no partial report.
    """
    rendered = Path(report.data_docs) if report.data_docs and Path(report.data_docs).is_dir() else None
    docs = folder / DATA_DOCS
    report = report.model_copy(update={"report_dir": str(folder), "data_docs": str(docs) if rendered else None})

    def build(staging: Path) -> None:
        if rendered is not None and rendered != docs:
            shutil.copytree(rendered, staging / DATA_DOCS)
        write_text_atomically(staging / REPORT_MARKDOWN, report.markdown())
        write_text_atomically(staging / REPORT_JSON, json.dumps(report.model_dump(), indent=2))

    try:
        publish_folder(folder, build)
    except OSError as error:
        raise ReportWriteError(
            f"Cannot write the validation report of {report.name} to {folder}: {error.strerror or error}."
        ) from error
    return report
