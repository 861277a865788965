"""Judging a batch: both engines over the same bytes, and its statistics against the training reference."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa_arrow

from conveyor.data.snapshots import Snapshot
from conveyor.schema.spec import DatasetSpec
from conveyor.settings import get_settings
from conveyor.validation.contract import contract_violations, latest_allowed_timestamp
from conveyor.validation.expectations import run_suite
from conveyor.validation.reader import UnreadableBatchError, as_polars, read_batch
from conveyor.validation.report import ValidationReport, Violation
from conveyor.validation.statistics import ReferenceProfile, reference_profile, statistic_warnings


def check_batch(
    batch: Snapshot, spec: DatasetSpec, reference: Snapshot | None = None, docs_dir: Path | None = None
) -> ValidationReport:
    """Judge a batch with both engines against its spec, compare it with the reference; GX Data Docs to ``docs_dir``."""
    settings = get_settings()
    report = ValidationReport(
        snapshot_sha256=batch.sha256, source=batch.source, dataset=spec.name, rows=0, violations=[]
    )
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
        gx = pool.submit(run_suite, frame, spec, latest_allowed_timestamp(settings), docs_dir)
        baseline = pool.submit(_reference_profile, reference, spec.features.numeric)
        cases = contract_violations(as_polars(table), spec)
        pandera = [Violation.model_validate(row) for row in cases.to_dict("records")]
        warnings = statistic_warnings(
            frame, baseline.result(), settings.validation.psi_warning, settings.validation.null_share_warning
        )
        expectations = [Violation(engine="great_expectations", **failure) for failure in gx.result()]
    return report.model_copy(
        update={
            "rows": len(frame),
            "violations": sorted(pandera + expectations, key=lambda v: -v.failing_rows),
            "warnings": warnings,
            "reference_sha256": reference.sha256 if baseline.result() is not None and reference else None,
        }
    )


def _reference_profile(reference: Snapshot | None, numeric_features: list[str]) -> ReferenceProfile | None:
    if reference is None:
        return None
    try:
        return reference_profile(reference, numeric_features)
    except (OSError, ValueError, pa_arrow.ArrowException):
        return None  # a reference that cannot be read only costs the statistics
