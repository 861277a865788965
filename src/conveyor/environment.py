"""What this process runs with: the locked dependency set (uv.lock) and the installed versions of key packages."""

from __future__ import annotations

import hashlib
import platform
from functools import cache
from importlib import metadata

from conveyor.settings import PROJECT_DIR

LOCK_FILE = PROJECT_DIR / "uv.lock"


@cache
def lock_sha256() -> str | None:
    """SHA-256 of the checkout's uv.lock, which `make install` installs exactly; None when run from elsewhere."""
    try:
        return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()
    except OSError:
        return None


def package_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Python's version and the installed version of each package (those not installed are left out)."""
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
