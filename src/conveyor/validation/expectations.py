"""The telemetry contract as a Great Expectations suite (validation/contracts/telemetry.json), run through GX's own API.

GX Core cannot express "timestamps increase per machine" (it has no grouped expectations); pandera checks that.
Great Expectations is imported lazily: it takes seconds to import and only validation needs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

SUITE_PATH = Path(__file__).parent / "contracts" / "telemetry.json"
# The suite's one run-time parameter: the latest timestamp a reading may carry (now plus the clock-skew allowance).
LATEST_TIMESTAMP_PARAMETER = "latest_allowed_timestamp"
_EXAMPLES = 3


def load_suite() -> dict[str, Any]:
    """The expectation suite as stored in the repository."""
    suite: dict[str, Any] = json.loads(SUITE_PATH.read_text())
    return suite


def run_suite(
    frame: pd.DataFrame, latest_timestamp: pd.Timestamp, docs_dir: Path | None = None
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
    suite = context.suites.add(ExpectationSuite(**load_suite()))
    batch = context.data_sources.add_pandas("conveyor").add_dataframe_asset("telemetry")
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="telemetry", data=batch.add_batch_definition_whole_dataframe("batch"), suite=suite)
    )
    actions: list[ValidationAction] = [UpdateDataDocsAction(name="data-docs")] if docs_dir is not None else []
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="telemetry",
            validation_definitions=[definition],
            actions=actions,
            # BASIC has all the report reads (failing rows, examples); SUMMARY's index lists cost a pass per check.
            result_format={"result_format": "BASIC", "partial_unexpected_count": _EXAMPLES},
        )
    )
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters={LATEST_TIMESTAMP_PARAMETER: latest_timestamp},
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
