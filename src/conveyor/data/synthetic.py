"""Deterministic synthetic predictive-maintenance telemetry, written as daily landing partitions."""

from __future__ import annotations

import datetime as dt
import zlib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from conveyor.io.files import write_atomically
from conveyor.schema.telemetry import TELEMETRY

READINGS_PER_MACHINE_PER_DAY = 96  # one reading every 15 minutes
# Column names come from the telemetry spec; the physics below is this generator's own.
MACHINE, TIME, LABEL = TELEMETRY.entity, TELEMETRY.event_time or "timestamp", TELEMETRY.label
MODEL = TELEMETRY.features.categorical[0].column
MACHINE_MODELS = tuple(TELEMETRY.vocabulary(MODEL) or ())
AGE = "age_days"
SENSORS = tuple(column for column in TELEMETRY.features.numeric if column != AGE)

# Per machine model: how much faster it wears (shifts failure risk) and its nominal rpm.
_MODEL_WEAR = {"TX-100": 0.0, "TX-200": 0.35, "VX-300": -0.25, "HX-400": 0.6}
_MODEL_RPM = {"TX-100": 1500.0, "TX-200": 1800.0, "VX-300": 1200.0, "HX-400": 2400.0}


class Corruption(StrEnum):
    """Kinds of damage the generator can inject to exercise validation."""

    NULLS = "nulls"
    TYPES = "types"
    RANGE = "range"


@dataclass(frozen=True)
class Drift:
    """A sensor shifted by a constant, e.g. ``temperature:+5``."""

    sensor: str
    shift: float

    @classmethod
    def parse(cls, text: str) -> Drift:
        """Read ``SENSOR:SHIFT``; raise ValueError with a readable reason otherwise."""
        sensor, sep, shift = text.partition(":")
        if not sep or sensor not in SENSORS:
            raise ValueError(f"drift must look like SENSOR:SHIFT with SENSOR one of {', '.join(SENSORS)}; got {text!r}")
        try:
            return cls(sensor, float(shift))
        except ValueError:
            raise ValueError(f"drift shift must be a number; got {shift!r} in {text!r}") from None


def generate_telemetry(
    rows: int,
    day: dt.date,
    seed: int = 7,
    drift: tuple[Drift, ...] = (),
    corrupt: tuple[Corruption, ...] = (),
    corrupt_fraction: float = 0.02,
) -> pd.DataFrame:
    """One day of telemetry for a fleet; same arguments, same frame."""
    if rows < 0:
        raise ValueError(f"rows must be zero or more; got {rows}")
    n_machines = max(1, -(-rows // READINGS_PER_MACHINE_PER_DAY))
    fleet = _fleet(n_machines, seed)
    # The fleet depends on the seed only; readings depend on the seed and the day.
    rng = np.random.default_rng([seed, day.toordinal()])

    machine_idx = np.arange(rows) % n_machines
    reading_idx = np.arange(rows) // n_machines
    start = pd.Timestamp(day)
    timestamps = start + pd.to_timedelta(reading_idx * (24 * 60 // READINGS_PER_MACHINE_PER_DAY), unit="min")

    wear = fleet["wear"][machine_idx]
    model = fleet[MODEL][machine_idx]
    nominal_rpm = np.vectorize(_MODEL_RPM.__getitem__, otypes=[float])(model) if rows else np.zeros(0)
    idle = rng.random(rows) < 0.05
    rpm = np.where(idle, 0.0, nominal_rpm * (1 + 0.05 * rng.standard_normal(rows)))
    load = rpm / np.maximum(nominal_rpm, 1.0)
    frame = pd.DataFrame(
        {
            MACHINE: fleet[MACHINE][machine_idx],
            TIME: timestamps,
            MODEL: pd.Categorical(model, categories=MACHINE_MODELS),
            AGE: fleet[AGE][machine_idx],
            "temperature": 55 + 12 * load + 8 * wear + 2.5 * rng.standard_normal(rows),
            "vibration": load * (0.6 + 0.5 * np.maximum(wear, 0)) + 0.08 * rng.standard_normal(rows).clip(-3, 3) * load,
            "pressure": 101 - 5 * wear + 1.5 * rng.standard_normal(rows),
            "rpm": rpm,
            "voltage": 230 - 3 * np.maximum(wear, 0) + 2.0 * rng.standard_normal(rows),
            LABEL: fleet[LABEL][machine_idx],
        }
    )
    frame["vibration"] = frame["vibration"].clip(lower=0.0)
    frame = frame[list(TELEMETRY.columns)]  # the spec's columns, in its order: a spec the physics misses fails here
    frame = frame.sort_values([MACHINE, TIME], kind="stable").reset_index(drop=True)
    for d in drift:
        frame[d.sensor] = frame[d.sensor] + d.shift
    return _corrupt(frame, corrupt, corrupt_fraction, rng) if corrupt else frame


def _fleet(n_machines: int, seed: int) -> dict[str, np.ndarray]:
    """Machines with a hidden wear level that drives both their sensors and their failures."""
    rng = np.random.default_rng([seed, zlib.crc32(b"fleet")])
    models = rng.choice(MACHINE_MODELS, size=n_machines, p=[0.4, 0.3, 0.2, 0.1])
    age_days = rng.integers(30, 3650, size=n_machines)
    model_wear = np.vectorize(_MODEL_WEAR.__getitem__, otypes=[float])(models)
    wear = 0.9 * rng.standard_normal(n_machines) + 1.2 * (age_days / 3650) + model_wear
    failure_risk = 1 / (1 + np.exp(-(3.5 * (wear - 1.6))))
    return {
        MACHINE: np.array([f"M-{i:05d}" for i in range(n_machines)]),
        MODEL: models,
        AGE: age_days.astype("int64"),
        "wear": wear,
        LABEL: (rng.random(n_machines) < failure_risk).astype("int64"),
    }


def _corrupt(
    frame: pd.DataFrame, kinds: tuple[Corruption, ...], fraction: float, rng: np.random.Generator
) -> pd.DataFrame:
    """Damage a share of the rows the way real feeds break."""
    frame = frame.copy()
    n = max(1, int(len(frame) * fraction)) if len(frame) else 0
    for kind in kinds:
        rows = rng.choice(len(frame), size=n, replace=False)
        if kind is Corruption.NULLS:
            frame.loc[rows, "temperature"] = np.nan
            frame.loc[rows, MODEL] = None
        elif kind is Corruption.RANGE:
            frame.loc[rows, "rpm"] = -frame.loc[rows, "rpm"] - 1
            frame.loc[rows, "voltage"] = 10_000.0
        elif kind is Corruption.TYPES:
            # A feed that starts sending sensor readings as text with units.
            frame["pressure"] = frame["pressure"].map(lambda v: f"{v:.2f} kPa")
    return frame


def write_partition(frame: pd.DataFrame, out_dir: Path, day: dt.date) -> Path:
    """Write one day's partition into a landing folder without ever exposing a half-written file."""
    target = out_dir / TELEMETRY.partition_name(day)
    write_atomically(target, lambda tmp: frame.to_parquet(tmp, index=False))
    return target
