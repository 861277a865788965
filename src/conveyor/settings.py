"""Every path and address Conveyor uses, in one place (env prefix ``CONVEYOR_``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr, computed_field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _project_dir() -> Path:
    """The checkout this package runs from (src/conveyor/ inside it); installed elsewhere, the working directory."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "deployments" / "prefect.yaml").is_file() else Path.cwd()


# Defaults are anchored to the checkout, never to wherever a command happens to run from.
PROJECT_DIR = _project_dir()


_PREFIX = "CONVEYOR_"


class _Group(BaseSettings):
    """A group of settings; like Prefect's own, each group reads its fields from ``CONVEYOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")


class StackSettings(_Group):
    """The local stack `conveyor up` runs: the Prefect server, its workers and how they start."""

    server_host: str = Field("127.0.0.1", description="Address the local Prefect server binds.")
    server_port: int = Field(4200, description="Port of the local Prefect server (API and UI).")
    prefect_api_url: str | None = Field(None, description="Prefect API; default: the local server.")
    worker_pools: list[str] = Field(["cpu"], description="Pools `conveyor up` starts a local process worker for.")
    worker_poll_seconds: int = Field(2, description="How often local workers ask for work (Prefect's default is 10 s).")
    startup_timeout_s: float = Field(90.0, description="How long to wait for the server.")


class StoreSettings(_Group):
    """Where data lands and where snapshots, models and quarantined batches are kept (the stores block's defaults)."""

    landing_dir: Path | None = Field(None, description="Where new partitions land; default: <state dir>/landing.")
    data_store: str | None = Field(
        None,
        description="Content-addressed dataset snapshots: a folder or an fsspec URL (s3://bucket/prefix); "
        "default: <state dir>/data.",
    )
    model_store: Path | None = Field(None, description="Registered model versions; default: <state dir>/models.")
    quarantine_dir: Path | None = Field(
        None, description="Batches that failed validation, with their reports; default: <state dir>/quarantine."
    )


class ValidationSettings(_Group):
    """What the statistics report as warnings, and when a landed file counts as complete."""

    psi_warning: float = Field(0.2, description="Population stability index of a feature above which it is reported.")
    null_share_warning: float = Field(
        0.01, description="Share of nulls in a column, above the reference's, that is reported."
    )
    landing_settle_s: float = Field(
        1.0, description="A landed file modified this recently is watched this long; if it grows, it is still landing."
    )
    future_tolerance_s: float = Field(
        300.0, description="How far past now a reading's timestamp may lie (clock skew) before it is refused."
    )


class WatcherSettings(_Group):
    """The landing watcher: what it polls and how often."""

    watch_url: str | None = Field(
        None, description="fsspec URL the landing watcher polls (e.g. s3://bucket/in); default: the landing folder."
    )
    watch_poll_seconds: float = Field(
        1.0, description="How often the landing watcher lists the landing zone; a file must look the same twice."
    )


class CacheSettings(_Group):
    """The task cache: where it lives, what its keys cover, and whether it is used."""

    cache_dir: Path | None = Field(
        None,
        description="Task cache: result records, task outputs, the cache ledger and the stat cache; "
        "default: <state dir>/cache.",
    )
    force_recompute: bool = Field(False, description="Recompute every cached task (its new result replaces the old).")
    code_packages: list[str] = Field(
        ["conveyor"], description="Packages whose source is part of every task's cache key."
    )
    cache_key: SecretStr | None = Field(
        None,
        description="Key (64 hex digits) that authenticates the task cache's records; default: the Secret block "
        "conveyor-cache-key, or <state dir>/keys/cache.key where no Prefect server answers.",
    )


class EdgeSettings(_Group):
    """Edge devices: which key a bundle must be signed with."""

    edge_public_key: str | None = Field(
        None,
        description="Ed25519 public key (64 hex digits) `conveyor edge-run` trusts; default: the one of the signing "
        "key block conveyor-edge-signing-key, read from the Prefect server.",
    )


class DatasetSettings(_Group):
    """Which dataset spec flows and commands use when none is named, and where users keep their own."""

    dataset: str = Field("telemetry", description="Dataset spec used when a flow or command names none.")
    datasets_dir: Path | None = Field(
        None, description="Folder of your dataset specs (<name>.yaml); the built-in telemetry spec is always there."
    )


class ConveyorSettings(BaseSettings):
    """Conveyor's settings, in groups; override any of them with ``CONVEYOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    project_dir: Path = Field(PROJECT_DIR, description="The checkout: where src/ and deployments/ live.")
    state_dir: Path = Field(
        PROJECT_DIR / ".conveyor",
        description="Server database, pid files, logs and the default stores.",
    )
    stack: StackSettings = Field(default_factory=StackSettings, description="The local stack.")
    stores: StoreSettings = Field(default_factory=StoreSettings, description="Where data and models are kept.")
    validation: ValidationSettings = Field(default_factory=ValidationSettings, description="Validation thresholds.")
    watcher: WatcherSettings = Field(default_factory=WatcherSettings, description="The landing watcher.")
    cache: CacheSettings = Field(default_factory=CacheSettings, description="The task cache.")
    datasets: DatasetSettings = Field(default_factory=DatasetSettings, description="Dataset specs.")
    edge: EdgeSettings = Field(default_factory=EdgeSettings, description="Edge devices.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def api_url(self) -> str:
        """The Prefect API this installation talks to."""
        return self.stack.prefect_api_url or f"http://{self.stack.server_host}:{self.stack.server_port}/api"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ui_url(self) -> str:
        """The Prefect UI of the API above."""
        return self.api_url.removesuffix("/api")

    @property
    def prefect_home(self) -> Path:
        """PREFECT_HOME for the local stack: its SQLite database, profiles and local storage."""
        return self.state_dir / "prefect"

    @property
    def pid_dir(self) -> Path:
        """Pid files of the processes `conveyor up` started."""
        return self.state_dir / "pids"

    @property
    def log_dir(self) -> Path:
        """Logs of the server and workers `conveyor up` started."""
        return self.state_dir / "logs"

    @property
    def key_dir(self) -> Path:
        """Keys kept on this host (mode 0700), outside the task cache that other hosts may write."""
        return self.state_dir / "keys"

    @property
    def watcher_state_file(self) -> Path:
        """The partitions the landing watcher already announced (survives restarts)."""
        return self.state_dir / "watcher" / "announced.json"

    @property
    def default_landing_dir(self) -> Path:
        """Landing folder used when none is configured."""
        return self.stores.landing_dir or self.state_dir / "landing"

    @property
    def default_data_store(self) -> str:
        """Snapshot store used when none is configured."""
        return self.stores.data_store or str(self.state_dir / "data")

    @property
    def default_model_store(self) -> Path:
        """Model store used when none is configured."""
        return self.stores.model_store or self.state_dir / "models"

    @property
    def default_quarantine_dir(self) -> Path:
        """Quarantine area used when none is configured."""
        return self.stores.quarantine_dir or self.state_dir / "quarantine"

    @property
    def task_cache_dir(self) -> Path:
        """Task cache used when none is configured."""
        return self.cache.cache_dir or self.state_dir / "cache"

    @property
    def store_copies_dir(self) -> Path:
        """Local copies of snapshots kept in an object store (what this host reads), and reports on their way there."""
        return self.task_cache_dir / "store-copies"

    def prefect_env(self) -> dict[str, str]:
        """Environment that points Prefect clients, servers and workers at this installation."""
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.stack.worker_poll_seconds),
            # Tasks called outside a flow (the CLI, tests) log locally instead of warning.
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            # Task results (cache records) live in the task cache, one place for every process.
            "PREFECT_LOCAL_STORAGE_PATH": str(self.task_cache_dir / "results"),
        }


def get_settings() -> ConveyorSettings:
    """Read the settings from the environment as it is now."""
    return ConveyorSettings()


def configure_prefect_env(settings: ConveyorSettings | None = None) -> ConveyorSettings:
    """Point this process's Prefect at Conveyor's API; call before prefect is imported."""
    settings = settings or get_settings()
    # Prefect creates PREFECT_HOME itself, but not its missing parents.
    settings.prefect_home.mkdir(parents=True, exist_ok=True)
    os.environ.update(settings.prefect_env())
    return settings
