"""A dataset, described once: columns, keys, label, features and cross-column rules (a pydantic model, or YAML).

Validation (pandera's schemas, the Great Expectations suite), the statistics, the feature encoding and the ONNX input
signature, partition names and the generator's columns all come from a spec and nothing else. A spec that contradicts
itself is refused when it is loaded, in one sentence naming the field, and never half-applied.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

SpecName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$")]
Dtype = Literal["string", "int64", "float64", "datetime"]
_NUMBERS = ("int64", "float64")


class SpecError(ValueError):
    """A dataset spec that cannot be used: unreadable, or contradicting itself."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    """One column: its type and what its values may be."""

    dtype: Dtype = Field(description="string, int64, float64 or datetime.")
    nullable: bool = Field(False, description="Whether a value may be missing.")
    # int | float: a bound written as 0 stays 0 in check names and reports, not 0.0.
    min: int | float | None = Field(None, description="Smallest allowed value (numbers).")
    max: int | float | None = Field(None, description="Largest allowed value (numbers).")
    allowed: list[str] | list[int] | None = Field(None, description="The only values allowed.")
    pattern: str | None = Field(None, description="Regular expression every value matches (strings).")
    max_length: int | None = Field(None, ge=1, description="Longest allowed value, in characters (strings).")
    earliest: dt.datetime | None = Field(None, description="Earliest allowed time (datetimes).")
    not_in_future: bool = Field(False, description="No value later than now plus the clock-skew allowance.")
    description: str = Field("", description="What the column holds.")

    def problems(self, name: str) -> list[str]:
        """What contradicts itself in this column, one phrase each."""
        found = []
        if self.min is not None and self.max is not None and self.min > self.max:
            found.append(f"columns.{name}: min {self.min:g} is above max {self.max:g}")
        if (self.min is not None or self.max is not None) and self.dtype not in _NUMBERS:
            found.append(f"columns.{name}: min and max apply to numbers, not to {self.dtype}")
        if (self.pattern or self.max_length) and self.dtype != "string":
            found.append(f"columns.{name}: pattern and max_length apply to strings, not to {self.dtype}")
        if (self.earliest or self.not_in_future) and self.dtype != "datetime":
            found.append(f"columns.{name}: earliest and not_in_future apply to datetimes, not to {self.dtype}")
        if self.allowed is not None:
            kind = str if self.dtype == "string" else int
            if self.dtype not in ("string", "int64") or not all(isinstance(v, kind) for v in self.allowed):
                found.append(f"columns.{name}: allowed values must be {self.dtype} values of a string or int64 column")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as error:
                found.append(f"columns.{name}: pattern {self.pattern!r} is not a regular expression ({error})")
        return found


class CategoricalFeature(_Strict):
    """A string column fed to the model by category: its known values, or learned from the training rows."""

    column: str
    vocabulary: list[str] | Literal["learn"] = Field(
        description="The categories, or `learn` to take them from the training rows of each refit."
    )


class Features(_Strict):
    """What the model reads: numeric columns as they are, categorical ones encoded."""

    numeric: list[str] = Field(min_length=1)
    categorical: list[CategoricalFeature] = []

    @property
    def columns(self) -> list[str]:
        """Every feature column, numeric first."""
        return [*self.numeric, *(c.column for c in self.categorical)]


class IncreasingPerEntity(_Strict):
    """A column (usually the event time) that strictly increases within each entity, in file order."""

    kind: Literal["increasing_per_entity"]
    name: str = Field(description="The check's name in reports.")
    column: str


class AtMostWhen(_Strict):
    """A column bounded above on the rows where another column equals a value (an idle machine does not vibrate)."""

    kind: Literal["at_most_when"]
    name: str = Field(description="The check's name in reports.")
    column: str
    max: int | float
    when_column: str
    equals: int | float


Rule = Annotated[IncreasingPerEntity | AtMostWhen, Field(discriminator="kind")]


class DatasetSpec(_Strict):
    """One dataset: everything Conveyor needs to validate, train on, export and generate its data."""

    name: SpecName
    description: str = ""
    partition_prefix: str = Field(description="Landed files are named <prefix>YYYY-MM-DD.parquet.")
    columns: dict[str, Column] = Field(min_length=1)
    entity: str = Field(description="The column naming who a row is about; held-out data is split by it.")
    event_time: str | None = Field(None, description="The column saying when a row happened.")
    unique: list[str] = Field(default_factory=list, description="Columns whose values together identify a row.")
    label: str = Field(description="The binary target (0 or 1).")
    prediction: str = Field("probability", description="Name of the model's output: the probability of label 1.")
    model: SpecName | None = Field(None, description="Registry name of the model refit trains; default: <name>-model.")
    features: Features
    slice_by: str | None = Field(None, description="A categorical column to compare models per value of.")
    rules: list[Rule] = []

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        problems = [problem for name, column in self.columns.items() for problem in column.problems(name)]
        named = {
            "entity": [self.entity],
            "event_time": [self.event_time] if self.event_time else [],
            "unique": self.unique,
            "label": [self.label],
            "features": self.features.columns,
            "slice_by": [self.slice_by] if self.slice_by else [],
            "rules": [c for rule in self.rules for c in _rule_columns(rule)],
        }
        problems += [
            f"{field}: column {column!r} is not among the columns"
            for field, columns in named.items()
            for column in columns
            if column not in self.columns
        ]
        if problems:
            raise ValueError(problems[0])
        label = self.columns[self.label]
        if self.label in self.features.columns:
            problems.append(f"label: {self.label!r} is also a feature")
        if label.dtype != "int64" or sorted(label.allowed or []) != [0, 1]:
            problems.append(f"label: {self.label!r} must be an int64 column whose allowed values are [0, 1]")
        problems += [
            f"features.numeric: {c!r} is a {self.columns[c].dtype} column, not a number"
            for c in self.features.numeric
            if self.columns[c].dtype not in _NUMBERS
        ]
        problems += [
            f"features.categorical: {c.column!r} is a {self.columns[c.column].dtype} column, not a string"
            for c in self.features.categorical
            if self.columns[c.column].dtype != "string"
        ]
        if self.event_time and self.columns[self.event_time].dtype != "datetime":
            problems.append(f"event_time: {self.event_time!r} is not a datetime column")
        if len(set(self.features.columns)) != len(self.features.columns):
            problems.append("features: a column is listed twice")
        if problems:
            raise ValueError(problems[0])
        return self

    @property
    def model_name(self) -> str:
        """The registry name of this dataset's model."""
        return self.model or f"{self.name}-model"

    @property
    def partition_glob(self) -> str:
        """The glob landed files of this dataset match."""
        return f"{self.partition_prefix}*.parquet"

    def partition_name(self, day: dt.date) -> str:
        """File name of the landing partition of one day."""
        return f"{self.partition_prefix}{day.isoformat()}.parquet"

    def vocabulary(self, column: str) -> list[str] | None:
        """The declared categories of a categorical feature (None: learned from the training rows)."""
        feature = next(c for c in self.features.categorical if c.column == column)
        return None if feature.vocabulary == "learn" else list(feature.vocabulary)


def _rule_columns(rule: IncreasingPerEntity | AtMostWhen) -> list[str]:
    return [rule.column, rule.when_column] if isinstance(rule, AtMostWhen) else [rule.column]


def load_spec(path: Path) -> DatasetSpec:
    """Read a spec from YAML; SpecError in one sentence naming the file and the field when it is unusable."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
        raise SpecError(f"Dataset spec {path} cannot be read: {reason}.") from None
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise SpecError(f"Dataset spec {path.name} is refused: {f'{where}: ' if where else ''}{message}.") from None


class FeatureEncoding(_Strict):
    """How one trained model reads rows: numeric columns in order, and each categorical column's categories.

    A category's code is its position plus one; 0 stands for every value the training rows never held.
    """

    numeric: list[str]
    categorical: dict[str, list[str]]
    label: str
    entity: str
    prediction: str
    # Each numeric feature's (min, max) in the data contract (None: unbounded): scoring refuses rows outside them.
    ranges: dict[str, tuple[float | None, float | None]] = {}


def feature_encoding(spec: DatasetSpec, training_rows: dict[str, list[str]]) -> FeatureEncoding:
    """The encoding of a model of ``spec``; learned vocabularies come from ``training_rows`` (column → values)."""
    categorical = {
        feature.column: sorted(set(training_rows[feature.column]))
        if feature.vocabulary == "learn"
        else list(feature.vocabulary)
        for feature in spec.features.categorical
    }
    return FeatureEncoding(
        numeric=list(spec.features.numeric),
        categorical=categorical,
        label=spec.label,
        entity=spec.entity,
        prediction=spec.prediction,
        ranges={name: (spec.columns[name].min, spec.columns[name].max) for name in spec.features.numeric},
    )
