"""Every bad batch of the corpus gets a clear verdict from the contract, naming the check that caught it."""

from __future__ import annotations

from pathlib import Path

from tasks.data import Snapshot
from tasks.files import sha256_file
from tasks.validation import ValidationReport, check_batch

# Great Expectations has no grouped expectation, so only pandera sees timestamps going backwards per machine.
_PANDERA_ONLY = {"timestamps out of order"}


def _check(path: Path) -> ValidationReport:
    batch = Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)
    return check_batch(batch)


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


def test_the_corpus_has_at_least_twenty_kinds_of_damage() -> None:
    from tests.conftest import BAD_BATCHES

    assert len(BAD_BATCHES) >= 20
