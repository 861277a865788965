"""Where reports live, and the quarantine: a copy of each failing batch's bytes, by content hash, never deleted."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger

from conveyor.cache import uncached_task
from conveyor.data.snapshots import Snapshot
from conveyor.data.store import DataStore
from conveyor.io.files import copy_hashing, sha256_file, write_atomically


def quarantine_folder(quarantine_dir: Path, sha256: str) -> Path:
    """The quarantine folder of a batch: its bytes under their original name, and its report."""
    return quarantine_dir / sha256[:2] / sha256


def report_key(sha256: str) -> str:
    """Where the validation report of a passing batch is kept in the data store, relative to its root."""
    return f"reports/{sha256[:2]}/{sha256}"


def report_folder(data_store: DataStore, sha256: str) -> Path:
    """Where this host writes the report of a passing batch: in the data store, or on its way to an object store."""
    return data_store.local_path(report_key(sha256))


@uncached_task("Keep report in data store", why="writes to the data store")
def keep_report(folder: Path, data_store: DataStore, sha256: str) -> str:
    """Keep a passing batch's report beside its snapshot (an object store gets a copy); returns where it is."""
    kept = data_store.keep_folder(folder, report_key(sha256))
    get_run_logger().info("Validation report kept at %s", kept)
    return kept


def _holds(target: Path, sha256: str) -> bool:
    return target.is_file() and sha256_file(target) == sha256


@uncached_task("Quarantine batch", why="writes to the quarantine")
def quarantine_batch(batch: Snapshot, quarantine_dir: Path) -> Path:
    """Keep a copy of a failing batch's bytes in the quarantine under their hash; what it was read from is untouched."""
    source = Path(batch.path)
    folder = quarantine_folder(quarantine_dir, batch.sha256)
    target = folder / source.name

    def copy_judged_bytes(tmp: Path) -> None:
        if (copied := copy_hashing(source, tmp)) != batch.sha256:
            raise ValueError(f"{source} holds bytes with SHA-256 {copied[:12]}, not the {batch.sha256[:12]} judged.")

    if not _holds(target, batch.sha256):  # else a concurrent run, or an earlier landing, kept these bytes already
        write_atomically(target, copy_judged_bytes)
    get_run_logger().warning("Quarantined %s in %s", batch.source, folder)
    return folder
