"""Land scikit-learn's bundled breast-cancer table as dated partitions, as breast-cancer.yaml describes them.

    python examples/breast_cancer/land.py LANDING_FOLDER [--days 3] [--first-day 2026-01-05]

Each patient gets an id and a clinic, each day's partition a share of the patients; the label is 1 for a
malignant tumour (scikit-learn's target is 1 for benign). Files appear whole: written under a temporary name,
then renamed into place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import zlib
from pathlib import Path

import pandas as pd
from sklearn.datasets import load_breast_cancer

from conveyor.io.files import write_atomically

PREFIX = "biopsies-"
CLINICS = ("north", "south", "east", "west")


def patients() -> pd.DataFrame:
    """Every row of the table with a patient id, a clinic and the malignancy label, in the spec's column names."""
    table = load_breast_cancer(as_frame=True).frame
    features = table.drop(columns="target").rename(columns=lambda name: name.replace(" ", "_"))
    ids = [f"P-{i:04d}" for i in range(len(table))]
    clinics = [CLINICS[zlib.crc32(i.encode()) % len(CLINICS)] for i in ids]
    labels = (1 - table["target"]).astype("int64")
    keys = pd.DataFrame({"patient_id": ids, "clinic": clinics})
    return pd.concat([keys, features, labels.rename("malignant")], axis=1)


def land(out: Path, days: int = 3, first_day: dt.date = dt.date(2026, 1, 5)) -> list[Path]:
    """Write one partition per day (patient i on day i mod days), each examination a minute after the last."""
    rows = patients()
    written = []
    for offset in range(days):
        day = first_day + dt.timedelta(days=offset)
        part = rows.iloc[offset::days].reset_index(drop=True)
        examined = pd.Timestamp(day) + pd.to_timedelta(range(len(part)), unit="min")
        part.insert(1, "examined_at", examined)
        target = out / f"{PREFIX}{day.isoformat()}.parquet"
        written.append(write_atomically(target, lambda tmp, part=part: part.to_parquet(tmp, index=False)))
    return written


def main() -> None:
    """Command-line entry: land the partitions and print their paths."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("out", type=Path, help="The landing folder (the stores block's landing_dir).")
    parser.add_argument("--days", type=int, default=3, help="Partitions to write, one per day.")
    parser.add_argument("--first-day", type=dt.date.fromisoformat, default=dt.date(2026, 1, 5))
    args = parser.parse_args()
    for path in land(args.out, args.days, args.first_day):
        print(path)


if __name__ == "__main__":
    main()
