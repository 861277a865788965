"""Data contract of landed telemetry, enforced with pandera and Great Expectations before anything trains on it.

Each engine checks the whole contract; a batch passes only when both pass. The contract is TelemetrySchema; pandera
runs it through its polars backend (derived from the model: same columns, checks and options; the unique key by a
faster check of the same verdict) on the batch's arrow buffers, and through its pandas backend wherever a pandas frame
is given. What each engine cannot express:
- Great Expectations (tasks/contracts/telemetry.json): timestamps increasing per machine (no grouped expectations),
  and the dtype of string columns (pandas 3's ``str`` dtype matches no GX type name; they are checked by value).
- pandera: everything here, but it renders no HTML; the Data Docs written next to each report come from GX.
Statistics against the training reference (tasks/statistics.py) are reported as warnings, never failed.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pandera.polars as pap
import polars as pl
import pyarrow as pa_arrow
import pyarrow.parquet as pq
from pandera.config import ValidationDepth, config_context
from pandera.dtypes import DataType, is_datetime, is_string
from pandera.errors import SchemaErrors
from pandera.typing import Series
from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel

from blocks.settings import ConveyorSettings, get_settings
from tasks.caching import Content, cached_task, task_output_dir, uncached_task
from tasks.data import Snapshot
from tasks.events import emit_validation
from tasks.expectations import run_suite
from tasks.files import sha256_file, write_text_atomically
from tasks.statistics import ReferenceProfile, StatisticWarning, reference_profile, statistic_warnings
from tasks.synthetic import LABEL, MACHINE_MODELS

# How many failing checks the error message names; the full list is in the report.
_TOP_FAILURES = 5
# Rows of the table artifact; a very wide batch can fail thousands of column checks.
_TABLE_ROWS = 200
_COLUMN_PRESENCE_CHECKS = ("column_in_dataframe", "column_in_schema")
# An idle machine (rpm 0) vibrates at most this much: more means a sensor is mislabelled or stuck.
IDLE_VIBRATION_MAX = 0.05
_CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
_TIMESTAMPS_INCREASE = "timestamps_increase_per_machine"
_IDLE_IS_STILL = f"idle_vibration_at_most_{IDLE_VIBRATION_MAX}"
# Row checks see every column; pandera reports a failing row once per column, so each is blamed on the one that matters.
_ROW_CHECK_BLAME = {_TIMESTAMPS_INCREASE: "timestamp", _IDLE_IS_STILL: "vibration"}
REPORT_JSON = "report.json"
REPORT_MARKDOWN = "report.md"
DATA_DOCS = "data-docs"


class DataValidationError(ValueError):
    """A batch broke the telemetry contract."""


class LandingError(ValueError):
    """A landed path is not a complete file inside the landing folder, so it is left where it is."""


class UnreadableBatchError(ValueError):
    """A batch's bytes are not a parquet table."""


def latest_allowed_timestamp(settings: ConveyorSettings | None = None) -> pd.Timestamp:
    """The latest timestamp a reading may carry: now, plus the allowance for clock skew."""
    return pd.Timestamp.now() + pd.Timedelta(seconds=(settings or get_settings()).future_tolerance_s)


# What a check hands pandera: a boolean per row (pandas Series, or a polars LazyFrame of one column) or one boolean.
CheckOutput = pd.Series | pl.LazyFrame | bool


def _evaluate(data: pd.Series | pd.DataFrame | pap.PolarsData, rule: pl.Expr) -> CheckOutput:
    """Evaluate a rule written once as a polars expression in whichever pandera backend calls it."""
    if isinstance(data, pap.PolarsData):
        return data.lazyframe.select(rule)
    frame = data.to_frame() if isinstance(data, pd.Series) else data
    outcome = pl.from_pandas(frame[list(dict.fromkeys(rule.meta.root_names()))]).select(rule).to_series()
    return pd.Series(outcome.to_numpy(), index=frame.index) if len(outcome) == len(frame) else bool(outcome.all())


def _column(data: pd.Series | pap.PolarsData) -> str:
    return data.key if isinstance(data, pap.PolarsData) else str(data.name)


class TelemetrySchema(pa.DataFrameModel):
    """One telemetry reading per machine and timestamp: the contract, once (the polars schema is derived from it).

    Built-in checks run in either pandera backend; the rest are polars expressions that both backends evaluate.
    """

    machine_id: Series[str] = pa.Field(str_matches=r"^M-\d{5,}$")
    timestamp: Series[pd.Timestamp] = pa.Field()
    machine_model: Series[str] = pa.Field(isin=list(MACHINE_MODELS))
    age_days: Series[int] = pa.Field(ge=0, le=20 * 365)
    temperature: Series[float] = pa.Field(ge=-40, le=150)
    vibration: Series[float] = pa.Field(ge=0, le=20)
    pressure: Series[float] = pa.Field(ge=0, le=300)
    rpm: Series[float] = pa.Field(ge=0, le=10_000)
    voltage: Series[float] = pa.Field(ge=100, le=400)
    failure_within_7d: Series[int] = pa.Field(isin=[0, 1], alias=LABEL)

    @pa.check("timestamp", name="not_in_the_future")
    def _not_in_the_future(cls, data: pd.Series | pap.PolarsData) -> CheckOutput:
        return _evaluate(data, pl.col(_column(data)) <= latest_allowed_timestamp().to_pydatetime())

    @pa.dataframe_check(name="has_rows")
    def _has_rows(cls, data: pd.DataFrame | pap.PolarsData) -> CheckOutput:
        if isinstance(data, pd.DataFrame):
            return len(data) > 0  # pandas' check cannot select an expression from a frame without columns
        return _evaluate(data, pl.len() > 0)

    @pa.check("machine_id", "machine_model", name="no_control_characters")
    def _no_control_characters(cls, data: pd.Series | pap.PolarsData) -> CheckOutput:
        return _evaluate(data, ~pl.col(_column(data)).str.contains(_CONTROL_CHARACTERS).fill_null(False))

    @pa.dataframe_check(name=_TIMESTAMPS_INCREASE)
    def _timestamps_increase(cls, data: pd.DataFrame | pap.PolarsData) -> CheckOutput:
        step = pl.col("timestamp").diff().over("machine_id")
        return _evaluate(data, step.is_null() | (step > pl.duration()))

    @pa.dataframe_check(name=_IDLE_IS_STILL)
    def _idle_machines_are_still(cls, data: pd.DataFrame | pap.PolarsData) -> CheckOutput:
        return _evaluate(data, (pl.col("rpm") != 0) | (pl.col("vibration") <= IDLE_VIBRATION_MAX))

    class Config:
        """Exactly these columns, each reading once."""

        strict = True
        coerce = False
        unique = ["machine_id", "timestamp"]


def _polars_dtype(dtype: DataType) -> pl.DataType | type[pl.DataType]:
    """The polars spelling of one of the contract's pandas dtypes (numbers keep their width)."""
    if is_string(dtype):
        return pl.String
    if is_datetime(dtype):
        return pl.Datetime  # any time unit, as in pandas
    return pl.Series(np.empty(0, dtype=str(dtype))).dtype


_UNIQUE_KEY = "multiple_fields_uniqueness"  # what pandera calls its check of the schema's ``unique`` columns
_KEY_COLUMNS: list[str] = list(TelemetrySchema.Config.unique)


def _keys_are_unique(data: pap.PolarsData) -> pl.LazyFrame | bool:
    """Pandera's ``unique`` check of the key columns (same verdict, failing rows), searching only if a key may repeat.

    Equal keys have equal hashes, so distinct hashes (sorted numbers, no neighbour alike) prove distinct keys; a
    repeated hash, from a duplicated key or a collision, runs pandera's own exact search for the duplicated rows.
    """
    keys = data.lazyframe.select(_KEY_COLUMNS)
    hashes = keys.select(pl.struct(_KEY_COLUMNS).hash().sort().alias("hash"))
    if not hashes.select((pl.col("hash") == pl.col("hash").shift()).any()).collect().item():
        return True
    return pl.LazyFrame({_UNIQUE_KEY: keys.collect().is_duplicated().not_()})


def polars_schema() -> pap.DataFrameSchema:
    """TelemetrySchema for pandera's polars backend: the same columns, checks and options.

    The table's ``unique`` key is checked by ``_keys_are_unique`` (same name, verdict and failing rows): pandera's own
    check hashes every key twice over, which was half of the whole validation.
    """
    source = TelemetrySchema.to_schema()
    assert source.unique == _KEY_COLUMNS, "the key check covers the model's unique columns"
    columns = {
        name: pap.Column(
            _polars_dtype(column.dtype), checks=column.checks, nullable=column.nullable, unique=column.unique
        )
        for name, column in source.columns.items()
    }
    unique_keys = pap.Check(_keys_are_unique, name=_UNIQUE_KEY)
    return pap.DataFrameSchema(
        columns, checks=[unique_keys, *source.checks], strict=TelemetrySchema.Config.strict, name=source.name
    )


_POLARS_SCHEMA = polars_schema()


def _categories_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as pandas' string dtype: the contract checks their values, not how they are stored."""
    categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.astype(dict.fromkeys(categorical, "str")) if categorical else frame


def _failure_cases(frame: pd.DataFrame | pl.DataFrame) -> pd.DataFrame | None:
    """Pandera's failure cases of a frame (polars backend for a polars frame, schema and data), or None if valid."""
    try:
        if isinstance(frame, pl.DataFrame):
            # As in pandas, a category is its text and NaN is missing (polars would rank NaN above every bound).
            # Done once, eagerly: pandera collects each check on its own, and would redo a lazy step every time.
            as_pandas_reads = frame.with_columns(
                pl.col(pl.Categorical, pl.Enum).cast(pl.String), pl.col(pl.Float32, pl.Float64).fill_nan(None)
            )
            with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
                _POLARS_SCHEMA.validate(as_pandas_reads.lazy(), lazy=True).collect()
        else:
            TelemetrySchema.validate(_categories_as_text(frame), lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        if isinstance(cases, pl.DataFrame):
            # Pandera reports duplicated keys before the column checks; the polars schema checks them among the
            # table checks, which come after.
            return cases.to_pandas().sort_values("check", key=lambda c: c != _UNIQUE_KEY, kind="stable")
        return cases
    return None


def contract_violations(frame: pd.DataFrame | pl.DataFrame) -> pd.DataFrame:
    """Every failing pandera check (lazy validation), one row per check and column; empty when valid."""
    if isinstance(frame, pl.DataFrame):
        cases = _failure_cases(frame) if frame.width else None
        if not frame.width or _is_misshapen(cases):
            # The polars backend stops at the first unexpected column, cannot check a frame without columns and
            # spells dtypes its own way: a batch of the wrong shape (refused either way) goes to the pandas backend.
            return contract_violations(frame.to_pandas())
    else:
        cases = _failure_cases(frame)
    if cases is None:
        return pd.DataFrame(columns=["check", "column", "failing_rows", "examples"])
    # The polars backend names the schema as the column of table-wide checks: blame them like the pandas backend does.
    whole_table = cases["column"] == _POLARS_SCHEMA.name
    cases["column"] = cases["column"].mask(whole_table, cases["check"].map(_ROW_CHECK_BLAME))
    duplicated_key = whole_table & (cases["check"] == _UNIQUE_KEY)
    key_columns = pd.Series([_KEY_COLUMNS] * len(cases), index=cases.index)
    cases["column"] = cases["column"].astype(object).mask(duplicated_key, key_columns)
    cases = cases.explode("column")
    # For missing or unexpected columns the failure case is the column's name: report it as the column.
    about_columns = cases["check"].isin(_COLUMN_PRESENCE_CHECKS)
    cases["column"] = cases["column"].where(~about_columns, cases["failure_case"]).fillna("(whole table)")
    blamed = cases["check"].map(_ROW_CHECK_BLAME)
    cases = cases[blamed.isna() | (cases["column"] == blamed)]
    return (
        cases.groupby(["check", "column"], dropna=False, sort=False)
        .agg(failing_rows=("index", "size"), examples=("failure_case", lambda s: [str(v) for v in s.head(3)]))
        .reset_index()
        .sort_values("failing_rows", ascending=False, kind="stable")
    )


def _is_misshapen(cases: pd.DataFrame | None) -> bool:
    """Whether pandera found missing, unexpected or mistyped columns."""
    if cases is None:
        return False
    checks = cases["check"].astype(str)
    return bool((checks.isin(_COLUMN_PRESENCE_CHECKS) | checks.str.startswith("dtype(")).any())


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
        return f"{self.name} broke the telemetry contract in {len(self.violations)} checks: {top}."

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
        lines += ["| " + " | ".join(c) + " |" for c in cells[:_TABLE_ROWS]]
        return "\n".join(lines) + "\n"


def read_batch(path: Path) -> pa_arrow.Table:
    """A batch's rows as arrow; UnreadableBatchError with the reader's reason when its bytes are not a parquet table."""
    try:
        return pq.read_table(path)
    except (OSError, ValueError, pa_arrow.ArrowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnreadableBatchError(f"{path.name} is not a readable parquet file ({reason}).") from None


def as_polars(table: pa_arrow.Table) -> pl.DataFrame:
    """The batch's columns for polars, sharing arrow's buffers; a pandas index stored in the file is not a column."""
    stored_index = [c for c in (table.schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)]
    frame = pl.from_arrow(table.drop_columns(stored_index))
    assert isinstance(frame, pl.DataFrame)  # a table, not a single column
    return frame


def check_batch(batch: Snapshot, reference: Snapshot | None = None, docs_dir: Path | None = None) -> ValidationReport:
    """Judge a batch with both engines and compare it with the reference; GX Data Docs go to ``docs_dir``."""
    settings = get_settings()
    report = ValidationReport(snapshot_sha256=batch.sha256, source=batch.source, rows=0, violations=[])
    try:
        table = read_batch(Path(batch.path))
    except UnreadableBatchError as error:
        unreadable = Violation(engine="reader", check="readable parquet", column="(file)", failing_rows=0,
                               examples=[str(error)])  # fmt: skip
        return report.model_copy(update={"readable": False, "violations": [unreadable]})
    # Read once: pandera's polars backend checks arrow's buffers in place; GX and the statistics need pandas.
    frame = table.to_pandas(split_blocks=True)
    # The engines only read the data: GX runs beside pandera (polars' work releases the GIL), and the reference's
    # profile is read (or, the first time, computed) meanwhile.
    with ThreadPoolExecutor(max_workers=2) as pool:
        gx = pool.submit(run_suite, frame, latest_allowed_timestamp(settings), docs_dir)
        baseline = pool.submit(_reference_profile, reference)
        pandera = [Violation.model_validate(row) for row in contract_violations(as_polars(table)).to_dict("records")]
        warnings = statistic_warnings(frame, baseline.result(), settings.psi_warning, settings.null_share_warning)
        expectations = [Violation(engine="great_expectations", **failure) for failure in gx.result()]
    return report.model_copy(
        update={
            "rows": len(frame),
            "violations": sorted(pandera + expectations, key=lambda v: -v.failing_rows),
            "warnings": warnings,
            "reference_sha256": reference.sha256 if baseline.result() is not None and reference else None,
        }
    )


def _reference_profile(reference: Snapshot | None) -> ReferenceProfile | None:
    if reference is None:
        return None
    try:
        return reference_profile(reference)
    except (OSError, ValueError, pa_arrow.ArrowException):
        return None  # a reference that cannot be read only costs the statistics


def write_report(report: ValidationReport, folder: Path) -> ValidationReport:
    """Write report.json, report.md and the Data Docs rendered so far into ``folder``; returns the report naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    rendered = Path(report.data_docs) if report.data_docs else None
    docs = None
    if rendered is not None and rendered.is_dir() and rendered != folder / DATA_DOCS:
        docs = shutil.copytree(rendered, folder / DATA_DOCS, dirs_exist_ok=True)
    report = report.model_copy(update={"report_dir": str(folder), "data_docs": str(docs) if docs else None})
    write_text_atomically(folder / REPORT_JSON, json.dumps(report.model_dump(), indent=2))
    write_text_atomically(folder / REPORT_MARKDOWN, report.markdown())
    return report


@uncached_task("Check landed file", why="checks the landing folder as it is now")
def inspect_landed_file(path: Path, landing_dir: Path) -> Snapshot:
    """Refuse a path outside the landing folder, a non-file, or a file still being written; hash the rest."""
    settle_s = get_settings().landing_settle_s
    resolved, landing = path.resolve(), landing_dir.resolve()
    if not resolved.is_relative_to(landing):
        raise LandingError(f"{path} is outside the landing folder {landing}; land it there first.")
    if not resolved.is_file():
        raise LandingError(f"{path} is not a regular file; a batch is one parquet file.")
    before = resolved.stat()
    if time.time() - before.st_mtime < settle_s:
        # Recently modified: watch it for a moment, and leave it alone if it is still growing.
        time.sleep(settle_s)
        after = resolved.stat()
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise LandingError(
                f"{path.name} is still being written ({before.st_size} then {after.st_size} bytes within "
                f"{settle_s:g} s); it is left in place, validate it once it is complete."
            )
    return Snapshot(sha256=sha256_file(resolved), path=str(resolved), source=str(resolved), size_bytes=before.st_size)


@cached_task("Validate snapshot")
def validate_snapshot(snapshot: Snapshot, reference: Snapshot | None = None) -> ValidationReport:
    """Check a batch against the contract with pandera and Great Expectations, and against the reference."""
    docs = task_output_dir() / DATA_DOCS
    report = check_batch(snapshot, reference, docs).model_copy(update={"data_docs": str(docs)})
    get_run_logger().info(report.summary())
    return report


@uncached_task("Publish validation report", why="publishes this run's report and artifacts")
def publish_report(report: ValidationReport, folder: Path) -> ValidationReport:
    """Write the report and its Data Docs into ``folder``, and show it as table and markdown artifacts."""
    published = write_report(report, folder)
    create_table_artifact(
        table=published.table()[:_TABLE_ROWS],
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
