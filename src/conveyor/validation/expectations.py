"""A dataset's contract as a Great Expectations suite, generated from its spec and run through GX's own API.

GX Core cannot express "values increase per entity" (it has no grouped expectations); pandera checks that. No value
may lie in the future: checked on the column's maximum (an aggregate), because GX compares datetimes row by row in
Python; the earliest allowed time likewise on the minimum. Great Expectations is imported lazily: it takes seconds to
import and only validation needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from conveyor.schema.spec import DatasetSpec
from conveyor.validation.contract import CONTROL_CHARACTERS

# The suite's run-time parameter: the latest timestamp a reading may carry (now plus the clock-skew allowance).
LATEST_TIMESTAMP_PARAMETER = "latest_allowed_timestamp"
_EXAMPLES = 3
_DATETIME_TYPES = ["datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]


def _expect(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": f"expect_{kind}", "kwargs": kwargs}


def _earliest_parameter(column: str) -> str:
    return f"earliest_allowed_{column}"


def suite(spec: DatasetSpec) -> dict[str, Any]:
    """The spec as an expectation suite: table shape and keys, then every column's checks, then the rules."""
    expectations = [
        _expect("table_columns_to_match_set", column_set=list(spec.columns), exact_match=True),
        _expect("table_row_count_to_be_between", min_value=1),
    ]
    if len(spec.unique) > 1:
        expectations.append(_expect("compound_columns_to_be_unique", column_list=list(spec.unique)))
    elif spec.unique:  # GX's compound check wants two columns or more
        expectations.append(_expect("column_values_to_be_unique", column=spec.unique[0]))
    for name, column in spec.columns.items():
        if not column.nullable:
            expectations.append(_expect("column_values_to_not_be_null", column=name))
        if column.dtype in ("int64", "float64"):
            expectations.append(_expect("column_values_to_be_in_type_list", column=name, type_list=[column.dtype]))
        elif column.dtype == "datetime":
            expectations.append(_expect("column_values_to_be_in_type_list", column=name, type_list=_DATETIME_TYPES))
        if column.pattern is not None:
            expectations.append(_expect("column_values_to_match_regex", column=name, regex=column.pattern))
        if column.max_length is not None:
            expectations.append(_expect("column_value_lengths_to_be_between", column=name, max_value=column.max_length))
        if column.dtype == "string":
            expectations.append(_expect("column_values_to_not_match_regex", column=name, regex=CONTROL_CHARACTERS))
        if column.allowed is not None:
            expectations.append(_expect("column_values_to_be_in_set", column=name, value_set=list(column.allowed)))
        if column.min is not None or column.max is not None:
            bounds = {k: v for k, v in {"min_value": column.min, "max_value": column.max}.items() if v is not None}
            expectations.append(_expect("column_values_to_be_between", column=name, **bounds))
        if column.earliest is not None:
            earliest = {"$PARAMETER": _earliest_parameter(name)}
            expectations.append(_expect("column_min_to_be_between", column=name, min_value=earliest))
        if column.not_in_future:
            latest = {"$PARAMETER": LATEST_TIMESTAMP_PARAMETER}
            expectations.append(_expect("column_max_to_be_between", column=name, max_value=latest))
    for rule in spec.rules:
        if rule.kind == "at_most_when":
            condition = f"{rule.when_column} == {rule.equals:g}"
            expectations.append(
                _expect(
                    "column_values_to_be_between",
                    column=rule.column,
                    max_value=rule.max,
                    row_condition=condition,
                    condition_parser="pandas",
                )
            )
    return {"name": spec.name, "expectations": expectations}


def _parameters(spec: DatasetSpec, latest_timestamp: pd.Timestamp) -> dict[str, Any]:
    earliest = {
        _earliest_parameter(name): pd.Timestamp(column.earliest)
        for name, column in spec.columns.items()
        if column.earliest is not None
    }
    return {LATEST_TIMESTAMP_PARAMETER: latest_timestamp, **earliest}


def run_suite(
    frame: pd.DataFrame, spec: DatasetSpec, latest_timestamp: pd.Timestamp, docs_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Validate a frame against the suite in an ephemeral GX context; one dict per failed expectation.

    With ``docs_dir``, GX's Data Docs (HTML) for this validation are written there.
    """
    import great_expectations as gx
    from great_expectations.checkpoint.actions import UpdateDataDocsAction, ValidationAction
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    sites = {}
    if docs_dir is not None:
        sites["conveyor"] = {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    context_config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites=sites,
    )
    context = gx.get_context(mode="ephemeral", project_config=context_config)
    expectation_suite = context.suites.add(ExpectationSuite(**suite(spec)))
    batch = context.data_sources.add_pandas("conveyor").add_dataframe_asset(spec.name)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(
            name=spec.name, data=batch.add_batch_definition_whole_dataframe("batch"), suite=expectation_suite
        )
    )
    actions: list[ValidationAction] = [UpdateDataDocsAction(name="data-docs")] if docs_dir is not None else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=spec.name,
            validation_definitions=[definition],
            actions=actions,
            # BASIC has all the report reads (failing rows, examples); SUMMARY's index lists cost a pass per check.
            result_format={"result_format": "BASIC", "partial_unexpected_count": _EXAMPLES},
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters=_parameters(spec, latest_timestamp),
    )
    failures = []
    for run in result.run_results.values():
        for outcome in run.results:
            config = outcome.expectation_config
            # Expectations about a missing column are left out: the column-set expectation already names it.
            if outcome.success or config is None or config.kwargs.get("column", "") not in {"", *frame}:
                continue
            failures.append(_failure(config.type, config.kwargs, outcome.result, outcome.exception_info))
    return failures


def _failure(kind: str, kwargs: dict[str, Any], result: dict[str, Any], exception: dict[str, Any]) -> dict[str, Any]:
    """A failed expectation as check, column, failing rows and examples."""
    column = kwargs.get("column") or ", ".join(kwargs.get("column_list") or []) or "(whole table)"
    condition = kwargs.get("row_condition")
    if isinstance(condition, dict):  # GX keeps a pandas row condition as {"pass_through_filter": "rpm == 0", ...}
        condition = condition.get("pass_through_filter", condition)
    check = f"{kind} where {condition}" if condition else kind
    if exception.get("raised_exception"):
        # An expectation that could not run (e.g. its column is missing) counts as failed, with GX's reason.
        message = str(exception.get("exception_message", "")).splitlines()[0][:200]
        return {"check": check, "column": column, "failing_rows": 0, "examples": [message]}
    if "unexpected_count" in result:
        examples = [str(v) for v in (result.get("partial_unexpected_list") or [])[:_EXAMPLES]]
        return {"check": check, "column": column, "failing_rows": int(result["unexpected_count"]), "examples": examples}
    observed = result.get("observed_value")
    examples = [str(v) for v in observed][:_EXAMPLES] if isinstance(observed, list) else [str(observed)]
    if kind == "expect_table_columns_to_match_set" and isinstance(result.get("details"), dict):
        mismatch = result["details"].get("mismatched", {})
        examples = [f"{k}: {', '.join(map(str, v))}"[:200] for k, v in mismatch.items()] or examples
    return {"check": check, "column": column, "failing_rows": 0, "examples": examples}
