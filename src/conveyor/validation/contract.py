"""Data contract of landed telemetry, enforced with pandera and Great Expectations before anything trains on it.

Each engine checks the whole contract; a batch passes only when both pass. The contract is TelemetrySchema; pandera
runs it through its polars backend (derived from the model: same columns, checks and options; the unique key by a
faster check of the same verdict) on the batch's arrow buffers, and through its pandas backend wherever a pandas frame
is given. What each engine cannot express:
- Great Expectations (validation/contracts/telemetry.json): timestamps increasing per machine (no grouped expectations),
  and the dtype of string columns (pandas 3's ``str`` dtype matches no GX type name; they are checked by value).
- pandera: everything here, but it renders no HTML; the Data Docs written next to each report come from GX.
Statistics against the training reference (validation/statistics.py) are reported as warnings, never failed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pandera.polars as pap
import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.dtypes import DataType, is_datetime, is_string
from pandera.errors import SchemaErrors
from pandera.typing import Series

from conveyor.schema.telemetry import LABEL, MACHINE_MODELS
from conveyor.settings import ConveyorSettings, get_settings

_COLUMN_PRESENCE_CHECKS = ("column_in_dataframe", "column_in_schema")
# An idle machine (rpm 0) vibrates at most this much: more means a sensor is mislabelled or stuck.
IDLE_VIBRATION_MAX = 0.05
_CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
_TIMESTAMPS_INCREASE = "timestamps_increase_per_machine"
_IDLE_IS_STILL = f"idle_vibration_at_most_{IDLE_VIBRATION_MAX}"
# Row checks see every column; pandera reports a failing row once per column, so each is blamed on the one that matters.
_ROW_CHECK_BLAME = {_TIMESTAMPS_INCREASE: "timestamp", _IDLE_IS_STILL: "vibration"}


def latest_allowed_timestamp(settings: ConveyorSettings | None = None) -> pd.Timestamp:
    """The latest timestamp a reading may carry: now, plus the allowance for clock skew."""
    return pd.Timestamp.now() + pd.Timedelta(seconds=(settings or get_settings()).validation.future_tolerance_s)


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
