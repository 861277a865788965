"""Data commands: generate synthetic partitions, check a batch, hash a file or folder."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.console import CommandError, DatasetOption, JsonFlag, fail, settings, show

# `conveyor validate`: exit status of a file that cannot be read at all (1 means read, and invalid).
_UNREADABLE = 2


def generate(
    rows: Annotated[int, typer.Option(min=1, help="Telemetry rows per day.")] = 50_000,
    day: Annotated[
        dt.datetime | None, typer.Option(formats=["%Y-%m-%d"], help="Day of the (first) partition; default: yesterday.")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Consecutive days to write, starting at --day.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Folder to write into; default: the landing folder.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the fleet and its readings.")] = 7,
    drift: Annotated[list[str] | None, typer.Option(help="Shift a sensor, e.g. temperature:+5 (repeatable).")] = None,
    corrupt: Annotated[
        list[str] | None, typer.Option(help="Inject damage: nulls, types or range (repeatable).")
    ] = None,
    corrupt_fraction: Annotated[float, typer.Option(min=0, max=1, help="Share of rows damaged.")] = 0.02,
    as_json: JsonFlag = False,
) -> None:
    """Write synthetic telemetry partitions into the landing folder."""
    from conveyor.blocks import ConveyorStores
    from conveyor.data.synthetic import Corruption, Drift, generate_telemetry, write_partition

    try:
        drifts = tuple(Drift.parse(d) for d in drift or ())
        corruptions = tuple(Corruption(c) for c in corrupt or ())
    except ValueError as error:
        raise CommandError(f"{error}; corruption kinds are {', '.join(Corruption)}.") from None
    target = out or ConveyorStores.resolve().landing_path
    # Yesterday by default: a whole day of readings, none of them in the future.
    first = day.date() if day else dt.date.today() - dt.timedelta(days=1)
    written = []
    for offset in range(days):
        date = first + dt.timedelta(days=offset)
        frame = generate_telemetry(rows, date, seed, drifts, corruptions, corrupt_fraction)
        written.append(str(write_partition(frame, target, date)))
    show({"partitions": written, "rows": rows}, as_json, "\n".join(written))


def validate(
    path: Annotated[Path, typer.Argument(help="A parquet batch to check where it lies; it is never moved.")],
    as_json: JsonFlag = False,
    dataset: DatasetOption = None,
) -> None:
    """Check a batch against its dataset's contract: exit 0 if valid, 1 if invalid, 2 if it cannot be read at all."""
    import tempfile

    from conveyor.blocks import ConveyorStores
    from conveyor.data.snapshots import Snapshot
    from conveyor.data.store import DataStore
    from conveyor.io.files import sha256_file
    from conveyor.registry.storage import ModelStore
    from conveyor.schema.catalog import find_spec
    from conveyor.validation.check import check_batch
    from conveyor.validation.reference import find_reference
    from conveyor.validation.report import write_report

    if not path.is_file():
        fail(f"cannot read {path}: {'it is a directory' if path.is_dir() else 'no such file'}.", _UNREADABLE)
    try:
        batch = Snapshot(sha256=sha256_file(path), path=str(path), source=str(path), size_bytes=path.stat().st_size)
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror or error}.", _UNREADABLE)
    spec = find_spec(dataset)
    stores = ConveyorStores.resolve()
    data_store = DataStore.of(stores)
    # A check by hand is this host's business: its report replaces the last one of the same bytes, outside the store.
    folder = settings().cli_reports_dir / batch.sha256
    with tempfile.TemporaryDirectory(prefix="conveyor-data-docs-") as docs:
        report = check_batch(batch, spec, find_reference(ModelStore.of(stores), data_store), Path(docs))
        report = write_report(report.model_copy(update={"data_docs": docs}), folder)
    outcome = {"passed": report.passed, "summary": report.summary(), "report": report.report_dir, **report.model_dump()}
    if not report.readable and not as_json:
        fail(f"{report.summary()} Report: {report.report_dir}", _UNREADABLE)
    show(outcome, as_json, f"{report.summary()}\nReport: {report.report_dir}/report.md")
    if not report.readable:
        raise typer.Exit(_UNREADABLE)
    if not report.passed:
        raise typer.Exit(1)


def hash_command(
    path: Annotated[Path, typer.Argument(help="A file or a folder.")],
    as_json: JsonFlag = False,
) -> None:
    """Print the BLAKE3 content hash of a file, or of a folder's manifest (the hash cache keys use)."""
    from conveyor.io.hashing import content_hash

    if not path.exists():
        raise CommandError(f"Nothing to hash at {path}.")
    digest = content_hash(path)
    kind = "folder" if path.is_dir() else "file"
    show({"path": str(path), "kind": kind, "blake3": digest}, as_json, f"{digest}  {path}")
