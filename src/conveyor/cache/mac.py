"""Authenticated cache entries: a keyed BLAKE3 MAC over each record, with a key that is never in the task cache.

The key is, in order: ``CONVEYOR_CACHE_KEY``; the Secret block ``conveyor-cache-key`` (made on first use, or by
`conveyor up`); where no Prefect server answers, ``<state dir>/keys/cache.key`` (mode 0600, made on first use).
Whoever can write the cache folder but cannot read the key cannot write an entry that verifies.
"""

from __future__ import annotations

import os
import secrets
import stat
import uuid
from contextlib import suppress
from functools import cache
from pathlib import Path

import httpx
from blake3 import blake3
from prefect.settings import get_current_settings

from conveyor.blocks import CACHE_KEY_BLOCK, KEY_BYTES, decode_key, ensure_secret_key
from conveyor.settings import get_settings

_DOMAIN = b"conveyor cache entry v1"


def record_mac(key: str, record: bytes, outputs: str) -> str:
    """MAC of one cache entry: its key, the record's bytes and its outputs' hashes (each length-prefixed)."""
    mac = blake3(key=mac_key())
    for part in (_DOMAIN, key.encode(), outputs.encode(), record):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def mac_key() -> bytes:
    """The cache's MAC key: from the settings, the Secret block, or this host's key file (looked up once)."""
    # Settings come from CONVEYOR_* variables only (no .env file): while they and the API stay, so does the key.
    conveyor_env = tuple(sorted((name, value) for name, value in os.environ.items() if name.startswith("CONVEYOR_")))
    return _mac_key(conveyor_env, str(get_current_settings().api.url))


@cache  # a key costs a server call or a file read (and reading the settings, milliseconds), not one per record
def _mac_key(conveyor_env: tuple[tuple[str, str], ...], api_url: str) -> bytes:
    settings = get_settings()
    if settings.cache.cache_key is not None:
        return decode_key(settings.cache.cache_key.get_secret_value(), "CONVEYOR_CACHE_KEY")
    try:
        return ensure_secret_key(CACHE_KEY_BLOCK)[0]
    except httpx.HTTPError:  # no Prefect server answers at api_url: this host's own key
        return _host_key(settings.key_dir / "cache.key")


def _host_key(path: Path) -> bytes:
    """The key file of this host, made private (0600 in a 0700 folder) by the first process that needs it."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(descriptor, secrets.token_hex(KEY_BYTES).encode())
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            with suppress(FileExistsError):  # a link never replaces the key another process made first
                os.link(tmp, path)
        finally:
            tmp.unlink()
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"The cache key file {path} is open to other users; make it private with chmod 600.")
    return decode_key(path.read_text(), f"The cache key file {path}")
