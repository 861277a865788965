"""Dropping cache entries, and their output folders, that no run has used for a while."""

from __future__ import annotations

import datetime as dt
import shutil
import time

from prefect.settings import get_current_settings

from conveyor.cache.ledger import ledger
from conveyor.settings import get_settings


def prune_cache(older_than: dt.timedelta) -> tuple[int, int]:
    """Drop cache entries (records, outputs) not used for ``older_than``; returns (entries, output folders) removed."""
    cache_dir = get_settings().task_cache_dir
    cutoff = time.time() - older_than.total_seconds()
    with ledger() as db:
        stale = [row[0] for row in db.execute("SELECT key FROM entries WHERE used < ?", (cutoff,)).fetchall()]
        records = get_current_settings().results.local_storage_path
        for key in stale:
            (records / key).unlink(missing_ok=True)
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
        db.execute("DELETE FROM decisions WHERE at < ?", (cutoff,))
        live = {row[0] for row in db.execute("SELECT key FROM entries").fetchall()}
    removed = 0
    outputs = cache_dir / "outputs"
    for folder in sorted(outputs.iterdir()) if outputs.is_dir() else []:
        if folder.name not in live and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder)
            removed += 1
    return len(stale), removed
