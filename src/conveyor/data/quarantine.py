"""Where reports live, and the quarantine: failing batches are moved aside by content hash, never deleted."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from prefect import get_run_logger

from conveyor.cache import uncached_task
from conveyor.data.snapshots import Snapshot
from conveyor.data.store import DataStore
from conveyor.io.files import rename_durably, sha256_file, write_atomically


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


@uncached_task("Quarantine batch", why="moves the batch out of the landing folder")
def quarantine_batch(batch: Snapshot, quarantine_dir: Path, move: bool = True) -> Path:
    """Move a failing batch (or, ``move`` off, copy a file given by path) into the quarantine under its hash."""
    source = Path(batch.path)
    folder = quarantine_folder(quarantine_dir, batch.sha256)
    target = folder / source.name
    folder.mkdir(parents=True, exist_ok=True)
    if not move:
        # A file the user named where it lies is theirs: the quarantine keeps a copy of the bytes that failed.
        if not _holds(target, batch.sha256):
            write_atomically(target, lambda tmp: shutil.copyfile(source, tmp))
        if not _holds(target, batch.sha256):
            target.unlink()
            get_run_logger().warning("%s changed after it was validated; only its report is kept in %s", source, folder)
        return folder
    if _holds(target, batch.sha256):
        source.unlink(missing_ok=True)  # the same bytes are already quarantined: this copy adds nothing
    else:
        try:
            rename_durably(source, target)
        except FileNotFoundError:
            if not _holds(target, batch.sha256):
                raise
            # A concurrent run (the watcher's validate beside a refit's) quarantined these bytes first.
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            # Another file system: copy under a temporary name, rename into place, then remove the original.
            write_atomically(target, lambda tmp: shutil.copyfile(source, tmp))
            source.unlink()
    get_run_logger().warning("Quarantined %s in %s", source, folder)
    return folder
