"""Files a task made live in the task cache; this copies them where a user asked for them."""

from __future__ import annotations

import shutil
from pathlib import Path

from conveyor.cache.decorators import uncached_task


@uncached_task("Copy outputs", why="writes where the user asked")
def copy_outputs(files: list[str], folder: Path) -> list[str]:
    """Copy files a task made (they live in the task cache) into a folder of the user's choosing."""
    folder.mkdir(parents=True, exist_ok=True)
    return [str(shutil.copy2(source, folder / Path(source).name)) for source in files]
