"""Statistics against the training reference are reported as warnings and never fail a batch."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from conveyor.data.snapshots import Snapshot
from conveyor.data.store import DataStore
from conveyor.data.synthetic import Drift, generate_telemetry
from conveyor.io.files import sha256_file
from conveyor.schema.telemetry import TELEMETRY
from conveyor.validation.check import check_batch
from conveyor.validation.contract import pandas_schema
from conveyor.validation.expectations import suite
from conveyor.validation.reference import find_reference
from conveyor.validation.statistics import population_stability, profile_frame, statistic_warnings

DAY = dt.date(2026, 4, 2)


def _batch(frame: pd.DataFrame, path: Path) -> Snapshot:
    frame.to_parquet(path, index=False)
    return Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift() -> None:
    reference = generate_telemetry(5_000, DAY)["temperature"]
    assert population_stability(reference, generate_telemetry(5_000, DAY + dt.timedelta(days=1))["temperature"]) < 0.05
    assert population_stability(reference, reference + 10) > 1.0


def test_drifted_but_valid_batch_passes_with_a_psi_warning(tmp_path: Path) -> None:
    reference = _batch(generate_telemetry(5_000, DAY), tmp_path / "reference.parquet")
    drifted = _batch(generate_telemetry(5_000, DAY, drift=(Drift("temperature", 8.0),)), tmp_path / "drifted.parquet")
    report = check_batch(drifted, TELEMETRY, reference)
    assert report.passed
    assert report.reference_sha256 == reference.sha256
    assert [w.column for w in report.warnings if w.statistic == "PSI"] == ["temperature"]
    assert "PSI of temperature" in report.summary()


def test_null_share_above_the_reference_is_reported() -> None:
    frame = generate_telemetry(1_000, DAY)
    frame.loc[:99, "pressure"] = float("nan")
    reference = profile_frame(generate_telemetry(1_000, DAY), "reference", TELEMETRY.features.numeric)
    warnings = statistic_warnings(frame, reference, psi_warning=10.0, null_share_warning=0.05)
    assert [(w.statistic, w.column) for w in warnings] == [("null share", "pressure")]


def test_without_a_registered_model_there_is_no_reference(tmp_path: Path) -> None:
    assert find_reference(tmp_path / "models", DataStore(url=str(tmp_path / "data"))) is None


def test_great_expectations_suite_and_pandera_schema_agree_on_every_range() -> None:
    columns = pandas_schema(TELEMETRY).columns
    for expectation in suite(TELEMETRY)["expectations"]:
        kwargs = expectation["kwargs"]
        if expectation["type"] != "expect_column_values_to_be_between" or "min_value" not in kwargs:
            continue
        stats = {k: v for c in columns[kwargs["column"]].checks for k, v in c.statistics.items()}
        assert (stats["min_value"], stats["max_value"]) == (kwargs["min_value"], kwargs["max_value"]), kwargs
