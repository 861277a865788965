"""What a request's rows must hold to be scored: the served version's features, each named when it is not right.

The checks of a numeric value (missing, not a number, not finite, outside its valid range) are the edge bundles' own
(``conveyor.models.features.refusal_reasons``); JSON adds its types on top: a string, a boolean, an array or an object
is no number, and a categorical value must be a string. A category the model never saw is scored: the graph maps it
to the unknown embedding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from pydantic import BaseModel

from conveyor.models.features import NUMERIC_INPUT, refusal_reasons
from conveyor.schema.spec import DatasetSpec, FeatureEncoding

# An answer lists this many problems at most (a 10,000-row batch of bad rows must not make a 10,000-line answer).
MAX_PROBLEMS = 20
_JSON_TYPES = {bool: "a boolean", str: "a string", list: "an array", dict: "an object", type(None): "null"}


class Problem(BaseModel):
    """One thing wrong with a request: the row (from 0) and field it is in, and what it is."""

    row: int | None = None
    field: str | None = None
    problem: str


class InvalidRowsError(ValueError):
    """Rows the served version cannot score; nothing was scored."""

    def __init__(self, problems: list[Problem], rows: int) -> None:
        bad = len({p.row for p in problems})
        super().__init__(f"{bad} of {rows} rows cannot be scored; the first: {problems[0].problem}.")
        self.problems = problems[:MAX_PROBLEMS]


@dataclasses.dataclass(frozen=True)
class Signature:
    """The inputs of one version: numeric features (valid ranges, which are whole numbers), categorical columns."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    ranges: dict[str, tuple[float | None, float | None]]
    whole: frozenset[str]
    columns: frozenset[str]  # every column a row must hold, and the only ones it may


def input_signature(encoding: FeatureEncoding, spec: DatasetSpec | None) -> Signature:
    """A version's signature, from the encoding stamped in its graph.

    The dataset spec, when known, adds which numeric features are integers: int64 columns take whole numbers only.
    """
    columns = spec.columns if spec else {}
    return Signature(
        numeric=tuple(encoding.numeric),
        categorical=tuple(encoding.categorical),
        ranges={f: encoding.ranges.get(f, (None, None)) for f in encoding.numeric},
        whole=frozenset(f for f in encoding.numeric if f in columns and columns[f].dtype == "int64"),
        columns=frozenset((*encoding.numeric, *encoding.categorical)),
    )


def _json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), "a number")


def _numeric_problem(feature: str, value: object, whole: bool) -> str | None:
    """What JSON types alone make wrong with a numeric value (None: nothing; null and NaN count as missing)."""
    if type(value) not in (int, float, type(None)):
        return f"{feature} must be a number, not {_json_type(value)}"
    if whole and isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        return f"{feature} takes whole numbers only; got {value!r}"
    return None


def _as_float(value: float) -> float:
    """A JSON number as a float; an integer too large for one is infinite (and refused as such)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def model_inputs(rows: list[dict[str, Any]], signature: Signature) -> dict[str, np.ndarray]:
    """The graph's inputs for rows of JSON values.

    InvalidRowsError, each problem naming its row and field, when any row cannot be scored.
    """
    problems: list[Problem] = []
    values = np.full((len(rows), len(signature.numeric)), np.nan)
    missing = np.zeros(values.shape, dtype=bool)
    strings = np.empty((len(signature.categorical), len(rows)), dtype=object)
    for index, row in enumerate(rows):
        found = [Problem(row=index, field=c, problem=f"missing column {c}") for c in signature.columns - row.keys()]
        found += [Problem(row=index, field=c, problem=f"unexpected column {c}") for c in row.keys() - signature.columns]
        for column, feature in enumerate(signature.numeric):
            value = row.get(feature)
            if problem := _numeric_problem(feature, value, feature in signature.whole):
                found.append(Problem(row=index, field=feature, problem=problem))
            elif value is None or value != value:  # null, or NaN (NaN != NaN): missing, as pandas counts it
                missing[index, column] = True
            else:
                values[index, column] = _as_float(value)
        for column, name in enumerate(signature.categorical):
            value = row.get(name)
            if isinstance(value, str):
                strings[column, index] = value
            elif value is None and name in row:
                found.append(Problem(row=index, field=name, problem=f"missing value in {name}"))
            elif name in row:
                found.append(
                    Problem(row=index, field=name, problem=f"{name} must be a string, not {_json_type(value)}")
                )
        problems += found
    reasons, features = refusal_reasons(values, missing, signature.ranges)
    flagged = {p.row for p in problems}
    problems += [
        Problem(row=int(i), field=features[i], problem=reasons[i])
        for i in np.flatnonzero(reasons != None)  # noqa: E711 (elementwise on an object array)
        if int(i) not in flagged
    ]
    if problems:
        raise InvalidRowsError(sorted(problems, key=lambda p: p.row or 0), len(rows))
    return {
        NUMERIC_INPUT: values.astype(np.float32),
        **{name: strings[column] for column, name in enumerate(signature.categorical)},
    }
