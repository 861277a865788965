"""The block that says where data lands and where snapshots and models are kept, and the keys kept in Secret blocks."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
from prefect import get_client
from prefect.blocks.core import Block
from prefect.blocks.system import Secret
from prefect.exceptions import ObjectNotFound
from pydantic import Field, SecretStr

from conveyor.settings import ConveyorSettings, get_settings

DEFAULT_BLOCK_NAME = "default"
# Secret blocks holding 32 random bytes as hex: the task cache's MAC key and the edge bundles' Ed25519 private key.
CACHE_KEY_BLOCK = "conveyor-cache-key"
EDGE_SIGNING_KEY_BLOCK = "conveyor-edge-signing-key"
KEY_BYTES = 32


class S3Credentials(Block):
    """Credentials of an S3-compatible object store (AWS S3, MinIO, Ceph, R2): an ``s3://`` data or model store."""

    _block_type_name = "Conveyor S3 Credentials"
    _block_type_slug = "conveyor-s3-credentials"
    _description = "Access key, secret and endpoint of an S3-compatible object store."

    access_key_id: str = Field(description="Access key ID.")
    secret_access_key: SecretStr = Field(description="Secret access key; stored encrypted, never logged.")
    endpoint_url: str | None = Field(None, description="Endpoint of a non-AWS store, e.g. http://minio:9000.")
    region_name: str | None = Field(None, description="Region of the bucket.")

    def storage_options(self) -> dict[str, Any]:
        """The options s3fs takes (the secret in clear text: hand them to fsspec, never to a log)."""
        client = {k: v for k, v in {"endpoint_url": self.endpoint_url, "region_name": self.region_name}.items() if v}
        return {"key": self.access_key_id, "secret": self.secret_access_key.get_secret_value(), "client_kwargs": client}


class ConveyorStores(Block):
    """Where Conveyor's data lands, and where its snapshots and model versions are kept."""

    _block_type_name = "Conveyor Stores"
    _block_type_slug = "conveyor-stores"
    _description = "Landing folder, dataset snapshot store and model store of a Conveyor installation."

    landing_dir: str = Field(description="Folder where new telemetry partitions land.")
    data_store: str = Field(
        description="Content-addressed dataset snapshots: a folder, or an fsspec URL such as s3://bucket/prefix."
    )
    model_store: str = Field(
        description="Registered model versions: a folder, or an object store URL such as s3://bucket/prefix."
    )
    # A default, so that blocks saved before quarantine existed still load.
    quarantine_dir: str = Field(
        default_factory=lambda: str(get_settings().default_quarantine_dir),
        description="Folder where batches that failed validation are kept, with their reports.",
    )
    data_store_credentials: S3Credentials | None = Field(
        None, description="Credentials of an s3:// data store; empty: the environment's (AWS_* variables, a role)."
    )
    model_store_credentials: S3Credentials | None = Field(
        None, description="Credentials of an s3:// model store; empty: the environment's (AWS_* variables, a role)."
    )

    @classmethod
    def from_settings(cls, settings: ConveyorSettings | None = None) -> ConveyorStores:
        """The stores as configured by ``CONVEYOR_*`` settings."""
        settings = settings or get_settings()
        return cls(
            landing_dir=str(settings.default_landing_dir),
            data_store=str(settings.default_data_store),
            model_store=settings.default_model_store,
            quarantine_dir=str(settings.default_quarantine_dir),
        )

    @classmethod
    def resolve(cls, name: str = DEFAULT_BLOCK_NAME) -> ConveyorStores:
        """The registered block of that name, or the settings' stores where none is registered or no server runs."""
        try:
            loaded = cls.load(name, validate=True)
        except (ValueError, httpx.HTTPError):
            return cls.from_settings()
        assert isinstance(loaded, cls)
        return loaded

    @property
    def landing_path(self) -> Path:
        """The landing folder as a path."""
        return Path(self.landing_dir)

    @property
    def model_path(self) -> Path:
        """A folder model store as a path (registry code takes ``ModelStore.of(stores)``, which also reads a URL)."""
        if "://" in self.model_store:
            raise ValueError(f"The model store {self.model_store} is not a folder.")
        return Path(self.model_store)

    @property
    def quarantine_path(self) -> Path:
        """The quarantine area as a path."""
        return Path(self.quarantine_dir)


def decode_key(text: object, source: str) -> bytes:
    """A 32-byte key written as 64 hex digits; anything else is refused, naming where it came from."""
    try:
        key = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ValueError(f"{source} does not hold a key of {2 * KEY_BYTES} hex digits.")
    return key


def load_secret_key(name: str) -> bytes | None:
    """The key kept in the Secret block of that name; None when there is none (httpx errors: no server answers)."""
    # Read as a document: Block.load would also emit a "loaded" event, which a short-lived CLI must then flush.
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, block_type_slug=Secret.get_block_type_slug())
        except ObjectNotFound:
            return None
    where = f"The Secret block {name} (delete it and run `conveyor up` for a new key)"
    return decode_key(document.data.get("value"), where)


def ensure_secret_key(name: str) -> tuple[bytes, bool]:
    """The key kept in the Secret block of that name, made of random bytes first if missing; and whether it was."""
    key = load_secret_key(name)
    if key is not None:
        return key, False
    try:
        Secret(value=secrets.token_hex(KEY_BYTES)).save(name)  # never overwrites: the server refuses a second one
        created = True
    except ValueError:  # another process saved its key first: everyone uses that one
        created = False
    key = load_secret_key(name)
    if key is None:
        raise LookupError(f"The Secret block {name} vanished while it was being created; try again.")
    return key, created
