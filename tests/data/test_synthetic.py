"""The generator makes realistic, reproducible telemetry and can break it on purpose."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from conveyor.data.synthetic import LABEL, SENSORS, Corruption, Drift, generate_telemetry, write_partition
from conveyor.schema.telemetry import TELEMETRY
from conveyor.validation.contract import contract_violations

DAY = dt.date(2026, 3, 1)


def test_same_arguments_give_the_same_rows() -> None:
    pd.testing.assert_frame_equal(generate_telemetry(5_000, DAY, seed=3), generate_telemetry(5_000, DAY, seed=3))


def test_seed_and_day_change_the_readings() -> None:
    base = generate_telemetry(5_000, DAY, seed=3)
    assert not base["temperature"].equals(generate_telemetry(5_000, DAY, seed=4)["temperature"])
    assert not base["temperature"].equals(generate_telemetry(5_000, DAY + dt.timedelta(days=1), seed=3)["temperature"])


def test_rows_are_one_day_of_unique_readings_with_both_labels() -> None:
    frame = generate_telemetry(10_000, DAY)
    assert len(frame) == 10_000
    assert frame["timestamp"].dt.date.eq(DAY).all()
    assert not frame.duplicated(["machine_id", "timestamp"]).any()
    assert 0.05 < frame[LABEL].mean() < 0.5


def test_failing_machines_run_hotter_and_shakier() -> None:
    frame = generate_telemetry(20_000, DAY)
    running = frame[frame["rpm"] > 0]
    by_label = running.groupby(LABEL)[["temperature", "vibration"]].mean()
    assert (by_label.loc[1] > by_label.loc[0]).all()


def test_idle_machines_do_not_vibrate() -> None:
    frame = generate_telemetry(20_000, DAY)
    assert frame.loc[frame["rpm"] == 0, "vibration"].max() < 0.05


def test_clean_output_honours_the_contract() -> None:
    assert contract_violations(generate_telemetry(10_000, DAY), TELEMETRY).empty


def test_drift_shifts_only_the_named_sensor() -> None:
    base = generate_telemetry(2_000, DAY)
    drifted = generate_telemetry(2_000, DAY, drift=(Drift.parse("temperature:+5"),))
    assert (drifted["temperature"] - base["temperature"]).round(9).eq(5).all()
    for sensor in set(SENSORS) - {"temperature"}:
        pd.testing.assert_series_equal(drifted[sensor], base[sensor])


@pytest.mark.parametrize(
    ("kind", "broken_column"),
    [(Corruption.NULLS, "temperature"), (Corruption.RANGE, "rpm"), (Corruption.TYPES, "pressure")],
)
def test_each_corruption_breaks_the_contract(kind: Corruption, broken_column: str) -> None:
    violations = contract_violations(generate_telemetry(2_000, DAY, corrupt=(kind,)), TELEMETRY)
    assert broken_column in set(violations["column"])


@pytest.mark.parametrize("text", ["temperature", "humidity:+1", "rpm:fast"])
def test_malformed_drift_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="drift"):
        Drift.parse(text)


def test_partition_is_written_whole_under_its_day(tmp_path: Path) -> None:
    frame = generate_telemetry(1_000, DAY)
    path = write_partition(frame, tmp_path, DAY)
    assert path == tmp_path / TELEMETRY.partition_name(DAY)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    assert len(pd.read_parquet(path)) == 1_000
