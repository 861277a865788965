"""Every bad batch of the corpus gets a clear verdict from the contract, naming the check that caught it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from conveyor.data.snapshots import Snapshot
from conveyor.io.files import sha256_file
from conveyor.schema.telemetry import TELEMETRY
from conveyor.validation.check import check_batch
from conveyor.validation.contract import contract_violations
from conveyor.validation.reader import as_polars, read_batch
from conveyor.validation.report import ValidationReport
from tests.fixtures.corpus import BAD_BATCHES

# Great Expectations has no grouped expectation, so only pandera sees timestamps going backwards per machine.
_PANDERA_ONLY = {"timestamps out of order"}


def _check(path: Path) -> ValidationReport:
    batch = Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)
    return check_batch(batch, TELEMETRY)


def test_every_bad_batch_is_refused_by_name(bad_batch: tuple[str, Path, str | None]) -> None:
    name, path, expected = bad_batch
    report = _check(path)
    assert not report.passed
    if expected is None:
        assert not report.readable
        assert "cannot be read" in report.summary()
        assert "not a readable parquet file" in report.summary()
        return
    named = [f"{v.check} on {v.column}" for v in report.violations]
    assert any(expected in failure for failure in named), named
    assert not report.engine_passed("pandera")
    assert report.engine_passed("great_expectations") is (name in _PANDERA_ONLY), named


def _named(violations: pd.DataFrame) -> list[tuple[object, object, object]]:
    return list(zip(violations["check"], violations["column"], violations["failing_rows"], strict=True))


@pytest.mark.parametrize("name", sorted(name for name, (_, expected) in BAD_BATCHES.items() if expected is not None))
def test_both_pandera_backends_say_the_same_about_every_readable_bad_batch(name: str, tmp_path: Path) -> None:
    path = tmp_path / "telemetry-bad.parquet"
    BAD_BATCHES[name][0](path)
    table = read_batch(path)
    assert _named(contract_violations(as_polars(table), TELEMETRY)) == _named(
        contract_violations(table.to_pandas(), TELEMETRY)
    )


def test_the_corpus_has_at_least_twenty_kinds_of_damage() -> None:
    assert len(BAD_BATCHES) >= 20
