"""A dataset's contract, enforced with pandera and Great Expectations before anything trains on it.

Each engine checks the whole contract; a batch passes only when both pass. Both come from the dataset spec
(conveyor.schema): pandera runs it through its polars backend (same columns, checks and options; the unique key by a
faster check of the same verdict) on the batch's arrow buffers, and through its pandas backend wherever a pandas frame
is given. What each engine cannot express:
- Great Expectations (validation/expectations.py): values increasing per entity (no grouped expectations), and the
  dtype of string columns (pandas 3's ``str`` dtype matches no GX type name; they are checked by value).
- pandera: everything here, but it renders no HTML; the Data Docs written next to each report come from GX.
Statistics against the training reference (validation/statistics.py) are reported as warnings, never failed.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pandera.polars as pap
import polars as pl
from pandera.config import ValidationDepth, config_context
from pandera.dtypes import DataType, is_datetime, is_string
from pandera.errors import SchemaErrors

from conveyor.schema.spec import AtMostWhen, Column, DatasetSpec, IncreasingPerEntity
from conveyor.settings import ConveyorSettings, get_settings

_COLUMN_PRESENCE_CHECKS = ("column_in_dataframe", "column_in_schema")
CONTROL_CHARACTERS = r"[\x00-\x1f\x7f]"
_UNIQUE_KEY = "multiple_fields_uniqueness"  # what pandera calls its check of the schema's ``unique`` columns
_DTYPES = {"string": str, "int64": "int64", "float64": "float64", "datetime": pd.Timestamp}


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


def _rule_check(rule: pl.Expr, name: str) -> pa.Check:
    """A check of a polars expression over the rows, in either pandera backend."""
    return pa.Check(lambda data: _evaluate(data, rule), name=name)


def _column_checks(column: Column) -> list[pa.Check]:
    """The built-in and rule checks one column's spec asks for (built-ins keep pandera's own names)."""
    checks = []
    if column.pattern is not None:
        checks.append(pa.Check.str_matches(column.pattern))
    if column.max_length is not None:
        checks.append(pa.Check.str_length(max_value=column.max_length))
    if column.allowed is not None:
        checks.append(pa.Check.isin(list(column.allowed)))
    if column.min is not None:
        checks.append(pa.Check.ge(column.min))
    if column.max is not None:
        checks.append(pa.Check.le(column.max))
    if column.earliest is not None:
        checks.append(pa.Check.ge(pd.Timestamp(column.earliest)))
    if column.not_in_future:
        checks.append(
            pa.Check(
                lambda data: _evaluate(data, pl.col(_column(data)) <= latest_allowed_timestamp().to_pydatetime()),
                name="not_in_the_future",
            )
        )
    if column.dtype == "string":
        no_controls = pa.Check(
            lambda data: _evaluate(data, ~pl.col(_column(data)).str.contains(CONTROL_CHARACTERS).fill_null(False)),
            name="no_control_characters",
        )
        checks.append(no_controls)
    return checks


def _has_rows(data: pd.DataFrame | pap.PolarsData) -> CheckOutput:
    if isinstance(data, pd.DataFrame):
        return len(data) > 0  # pandas' check cannot select an expression from a frame without columns
    return _evaluate(data, pl.len() > 0)


def _rule(spec: DatasetSpec, rule: IncreasingPerEntity | AtMostWhen) -> pa.Check:
    if isinstance(rule, IncreasingPerEntity):
        step = pl.col(rule.column).diff().over(spec.entity)
        return _rule_check(step.is_null() | (step > pl.duration()), rule.name)
    return _rule_check((pl.col(rule.when_column) != rule.equals) | (pl.col(rule.column) <= rule.max), rule.name)


def row_check_blame(spec: DatasetSpec) -> dict[str, str]:
    """Row checks see every column; pandera reports a failing row once per column: each is blamed on its own."""
    return {rule.name: rule.column for rule in spec.rules}


@cache
def _schemas(spec_json: str) -> tuple[pa.DataFrameSchema, pap.DataFrameSchema]:
    spec = DatasetSpec.model_validate_json(spec_json)
    columns = {
        name: pa.Column(_DTYPES[column.dtype], checks=_column_checks(column), nullable=column.nullable)
        for name, column in spec.columns.items()
    }
    table_checks = [pa.Check(_has_rows, name="has_rows"), *(_rule(spec, rule) for rule in spec.rules)]
    source = pa.DataFrameSchema(
        columns, checks=table_checks, strict=True, coerce=False, unique=spec.unique or None, name=spec.name
    )
    return source, _polars_schema(source, spec.unique)


def pandas_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """The spec as a pandera schema for its pandas backend: exactly these columns, each key once."""
    return _schemas(spec.model_dump_json())[0]


def polars_schema(spec: DatasetSpec) -> pap.DataFrameSchema:
    """The same schema for pandera's polars backend: the same columns, checks and options."""
    return _schemas(spec.model_dump_json())[1]


def _polars_dtype(dtype: DataType) -> pl.DataType | type[pl.DataType]:
    """The polars spelling of one of the contract's pandas dtypes (numbers keep their width)."""
    if is_string(dtype):
        return pl.String
    if is_datetime(dtype):
        return pl.Datetime  # any time unit, as in pandas
    return pl.Series(np.empty(0, dtype=str(dtype))).dtype


def _keys_are_unique(data: pap.PolarsData, key_columns: list[str]) -> pl.LazyFrame | bool:
    """Pandera's ``unique`` check of the key columns (same verdict, failing rows), searching only if a key may repeat.

    Equal keys have equal hashes, so distinct hashes (sorted numbers, no neighbour alike) prove distinct keys; a
    repeated hash, from a duplicated key or a collision, runs pandera's own exact search for the duplicated rows.
    """
    keys = data.lazyframe.select(key_columns)
    hashes = keys.select(pl.struct(key_columns).hash().sort().alias("hash"))
    if not hashes.select((pl.col("hash") == pl.col("hash").shift()).any()).collect().item():
        return True
    return pl.LazyFrame({_UNIQUE_KEY: keys.collect().is_duplicated().not_()})


def _polars_schema(source: pa.DataFrameSchema, key_columns: list[str]) -> pap.DataFrameSchema:
    """A pandas-backend schema for pandera's polars backend: the same columns, checks and options.

    The table's ``unique`` key is checked by ``_keys_are_unique`` (same name, verdict and failing rows): pandera's own
    check hashes every key twice over, which was half of the whole validation.
    """
    columns = {
        name: pap.Column(
            _polars_dtype(column.dtype), checks=column.checks, nullable=column.nullable, unique=column.unique
        )
        for name, column in source.columns.items()
    }
    unique_keys = [pap.Check(lambda data: _keys_are_unique(data, key_columns), name=_UNIQUE_KEY)] if key_columns else []
    return pap.DataFrameSchema(columns, checks=[*unique_keys, *source.checks], strict=True, name=source.name)


def _categories_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as pandas' string dtype: the contract checks their values, not how they are stored."""
    categorical = [c for c in frame.columns if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    return frame.astype(dict.fromkeys(categorical, "str")) if categorical else frame


def _failure_cases(frame: pd.DataFrame | pl.DataFrame, spec: DatasetSpec) -> pd.DataFrame | None:
    """Pandera's failure cases of a frame (polars backend for a polars frame, schema and data), or None if valid."""
    try:
        if isinstance(frame, pl.DataFrame):
            # As in pandas, a category is its text and NaN is missing (polars would rank NaN above every bound).
            # Done once, eagerly: pandera collects each check on its own, and would redo a lazy step every time.
            as_pandas_reads = frame.with_columns(
                pl.col(pl.Categorical, pl.Enum).cast(pl.String), pl.col(pl.Float32, pl.Float64).fill_nan(None)
            )
            with config_context(validation_depth=ValidationDepth.SCHEMA_AND_DATA):
                polars_schema(spec).validate(as_pandas_reads.lazy(), lazy=True).collect()
        else:
            pandas_schema(spec).validate(_categories_as_text(frame), lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        if isinstance(cases, pl.DataFrame):
            # Pandera reports duplicated keys before the column checks; the polars schema checks them among the
            # table checks, which come after.
            return cases.to_pandas().sort_values("check", key=lambda c: c != _UNIQUE_KEY, kind="stable")
        return cases
    return None


def contract_violations(frame: pd.DataFrame | pl.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Every failing pandera check (lazy validation), one row per check and column; empty when valid."""
    if isinstance(frame, pl.DataFrame):
        cases = _failure_cases(frame, spec) if frame.width else None
        if not frame.width or _is_misshapen(cases):
            # The polars backend stops at the first unexpected column, cannot check a frame without columns and
            # spells dtypes its own way: a batch of the wrong shape (refused either way) goes to the pandas backend.
            return contract_violations(frame.to_pandas(), spec)
    else:
        cases = _failure_cases(frame, spec)
    if cases is None:
        return pd.DataFrame(columns=["check", "column", "failing_rows", "examples"])
    # The polars backend names the schema as the column of table-wide checks: blame them like the pandas backend does.
    blame = row_check_blame(spec)
    whole_table = cases["column"] == spec.name
    cases["column"] = cases["column"].mask(whole_table, cases["check"].map(blame))
    duplicated_key = whole_table & (cases["check"] == _UNIQUE_KEY)
    key_columns = pd.Series([spec.unique] * len(cases), index=cases.index)
    cases["column"] = cases["column"].astype(object).mask(duplicated_key, key_columns)
    cases = cases.explode("column")
    # For missing or unexpected columns the failure case is the column's name: report it as the column.
    about_columns = cases["check"].isin(_COLUMN_PRESENCE_CHECKS)
    cases["column"] = cases["column"].where(~about_columns, cases["failure_case"]).fillna("(whole table)")
    blamed = cases["check"].map(blame)
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
