"""Every path and address Conveyor uses, in one place (env prefix ``CONVEYOR_``), each checked when it is read."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError, computed_field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as _SourceError


def _project_dir() -> Path:
    """The checkout this package runs from (src/conveyor/ inside it); installed elsewhere, the working directory."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "deployments" / "prefect.yaml").is_file() else Path.cwd()


# Defaults are anchored to the checkout, never to wherever a command happens to run from.
PROJECT_DIR = _project_dir()


_PREFIX = "CONVEYOR_"


class InvalidSettingError(ValueError):
    """A setting holds a value Conveyor cannot use; the message is one sentence naming its variable."""


@dataclasses.dataclass(frozen=True)
class Expects:
    """What a setting must hold, as the sentence refusing a bad value says it (``secret``: never echo the value)."""

    text: str
    secret: bool = False


def _not_blank(value: Any) -> Any:
    """Refuse an empty or all-blank value, which would otherwise mean "the current folder" or nothing at all."""
    if isinstance(value, str) and not value.strip():
        raise ValueError("it is empty")
    return value


def _names_list(value: Any) -> Any:
    """A list given as JSON (``["cpu", "gpu"]``) or, as people type it, comma-separated (``cpu,gpu``)."""
    if not isinstance(value, str):
        return value
    if value.lstrip().startswith("["):
        return json.loads(value)
    return [name.strip() for name in value.split(",") if name.strip()]


def _known_protocols(url: str) -> str:
    """A folder, or an fsspec URL (chained ones too: ``simplecache::s3://...``) whose protocols fsspec knows."""
    if "://" not in url and "::" not in url:
        return url
    import fsspec

    *chained, last = url.split("::")
    protocols = [*chained, last.split("://", 1)[0]] if "://" in last else chained
    unknown = [p for p in protocols if p not in fsspec.available_protocols()]
    if unknown:
        raise ValueError(f"fsspec knows no protocol {unknown[0]!r}")
    return url


def _long_token(secret: SecretStr) -> SecretStr:
    """A bearer token long enough not to be guessed."""
    if len(secret.get_secret_value().strip()) < _MIN_TOKEN_CHARACTERS:
        raise ValueError(f"it is shorter than {_MIN_TOKEN_CHARACTERS} characters")
    return secret


def _folder_or_s3(url: str) -> str:
    """The model store relies on S3's conditional writes: a folder or an s3:// URL, no other object store."""
    if "://" in url and url.split("://", 1)[0] not in ("s3", "s3a", "file"):
        raise ValueError("the model store takes no other object store")
    return url


def _user_and_password(secret: SecretStr) -> SecretStr:
    """Basic auth needs ``user:password``."""
    user, colon, password = secret.get_secret_value().partition(":")
    if not (user and colon and password):
        raise ValueError("it is not of the form user:password")
    return secret


_MIN_TOKEN_CHARACTERS = 16
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
_PACKAGE = r"^[A-Za-z_][A-Za-z0-9_]*$"

Port = Annotated[int, Field(ge=1, le=65535), Expects("an integer from 1 to 65535")]
Host = Annotated[str, Field(pattern=r"^[^\s/]+$"), Expects("a host name or IP address")]
ApiUrl = Annotated[str, Field(pattern=r"^https?://[^\s/]+\S*$"), Expects("an http:// or https:// URL")]
WholeSeconds = Annotated[int, Field(ge=1), Expects("a whole number of seconds, 1 or more")]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False), Expects("a finite number of seconds, 0 or more")]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False), Expects("a finite number of seconds above 0")]
Threshold = Annotated[float, Field(ge=0, allow_inf_nan=False), Expects("a finite number, 0 or more")]
Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), Expects("a finite share from 0 to 1")]
Flag = Annotated[bool, Expects("true or false (1/0, yes/no and on/off work too)")]
Folder = Annotated[Path, BeforeValidator(_not_blank), Expects("a folder path")]
File = Annotated[Path, BeforeValidator(_not_blank), Expects("a file path")]
StoreUrl = Annotated[
    str,
    BeforeValidator(_not_blank),
    AfterValidator(_known_protocols),
    Expects("a folder or an fsspec URL such as s3://bucket/prefix"),
]
ModelStoreUrl = Annotated[
    str, BeforeValidator(_not_blank), AfterValidator(_folder_or_s3), Expects("a folder or an s3:// URL")
]
PoolNames = Annotated[
    list[Annotated[str, Field(pattern=_NAME)]],
    NoDecode,
    BeforeValidator(_names_list),
    Field(min_length=1),
    Expects("one or more work pool names (letters, digits, - and _), comma-separated or as a JSON list"),
]
PackageNames = Annotated[
    list[Annotated[str, Field(pattern=_PACKAGE)]],
    NoDecode,
    BeforeValidator(_names_list),
    Field(min_length=1),
    Expects("one or more top-level Python package names, comma-separated or as a JSON list"),
]
Bytes = Annotated[int, Field(ge=1), Expects("a whole number of bytes, 1 or more")]
Threads = Annotated[int, Field(ge=1, le=256), Expects("a whole number of threads from 1 to 256")]
BearerToken = Annotated[
    SecretStr,
    AfterValidator(_long_token),
    Expects(f"a token of {_MIN_TOKEN_CHARACTERS} characters or more", secret=True),
]
AuthString = Annotated[
    SecretStr, AfterValidator(_user_and_password), Expects("user:password, both parts non-empty", secret=True)
]


class _Group(BaseSettings):
    """A group of settings; like Prefect's own, each group reads its fields from ``CONVEYOR_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")


class StackSettings(_Group):
    """The local stack `conveyor up` runs: the Prefect server, its workers and how they start."""

    server_host: Host = Field("127.0.0.1", description="Address the local Prefect server binds.")
    server_port: Port = Field(4200, description="Port of the local Prefect server (API and UI).")
    prefect_api_url: ApiUrl | None = Field(None, description="Prefect API; default: the local server.")
    api_auth_string: AuthString | None = Field(
        None,
        description="Basic auth for the Prefect API, `user:password`: the local server `conveyor up` starts requires "
        "it, and the CLI, workers and watcher send it. Set it for any server reachable from other hosts.",
    )
    worker_pools: PoolNames = Field(["cpu"], description="Pools `conveyor up` starts a local process worker for.")
    worker_poll_seconds: WholeSeconds = Field(
        2, description="How often local workers ask for work (Prefect's default is 10 s)."
    )
    startup_timeout_s: PositiveSeconds = Field(90.0, description="How long to wait for the server.")


class StoreSettings(_Group):
    """Where data lands and where snapshots, models and quarantined batches are kept (the stores block's defaults)."""

    landing_dir: Folder | None = Field(None, description="Where new partitions land; default: <state dir>/landing.")
    data_store: StoreUrl | None = Field(
        None,
        description="Content-addressed dataset snapshots: a folder or an fsspec URL (s3://bucket/prefix); "
        "default: <state dir>/data.",
    )
    model_store: ModelStoreUrl | None = Field(
        None,
        description="Registered model versions: a folder or an s3:// URL (s3://bucket/prefix); "
        "default: <state dir>/models.",
    )
    quarantine_dir: Folder | None = Field(
        None, description="Batches that failed validation, with their reports; default: <state dir>/quarantine."
    )


class ValidationSettings(_Group):
    """What the statistics report as warnings, and when a landed file counts as complete."""

    psi_warning: Threshold = Field(
        0.2, description="Population stability index of a feature above which it is reported."
    )
    null_share_warning: Share = Field(
        0.01, description="Share of nulls in a column, above the reference's, that is reported."
    )
    landing_settle_s: Seconds = Field(
        1.0, description="A landed file modified this recently is watched this long; if it grows, it is still landing."
    )
    future_tolerance_s: Seconds = Field(
        300.0, description="How far past now a reading's timestamp may lie (clock skew) before it is refused."
    )


class WatcherSettings(_Group):
    """The landing watcher: what it polls and how often."""

    watch_url: StoreUrl | None = Field(
        None, description="fsspec URL the landing watcher polls (e.g. s3://bucket/in); default: the landing folder."
    )
    watch_poll_seconds: PositiveSeconds = Field(
        1.0, description="How often the landing watcher lists the landing zone; a file must look the same twice."
    )


class CacheSettings(_Group):
    """The task cache: where it lives, what its keys cover, and whether it is used."""

    cache_dir: Folder | None = Field(
        None,
        description="Task cache: result records, task outputs, the cache ledger and the stat cache; "
        "default: <state dir>/cache.",
    )
    force_recompute: Flag = Field(False, description="Recompute every cached task (its new result replaces the old).")
    code_packages: PackageNames = Field(
        ["conveyor"], description="Packages whose source is part of every task's cache key."
    )
    ledger_timeout_s: PositiveSeconds = Field(
        60.0, description="How long a process waits for the cache ledger while another one writes it, then gives up."
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


class ServingSettings(_Group):
    """The model server (`conveyor serve`): where it listens, how it follows the registry, who may steer it."""

    serving_host: Host = Field("127.0.0.1", description="Address the model server binds.")
    serving_port: Port = Field(8080, description="Port of the model server.")
    serving_poll_seconds: PositiveSeconds = Field(
        0.5, description="How often the server reads the model's aliases to follow its production version."
    )
    serving_max_body_bytes: Bytes = Field(
        1_048_576, description="Largest request body accepted (1 MiB); a larger one is answered 413."
    )
    serving_threads: Threads = Field(
        1, description="ONNX Runtime threads per loaded version (intra-op); 1 suits batch-1 requests best."
    )
    serving_control_token: BearerToken | None = Field(
        None,
        description="Bearer token the control API (/control) requires; empty: no token is asked for. Set it for any "
        "server reachable from other hosts.",
    )
    serving_fault_rate: Share = Field(
        0.0,
        description="TESTS ONLY: share of the canary version's answers replaced by a 503, to exercise automatic "
        "rollback. Leave it at 0 in every real deployment.",
    )


class DatasetSettings(_Group):
    """Which dataset spec flows and commands use when none is named, and where users keep their own."""

    dataset: str = Field("telemetry", description="Dataset spec used when a flow or command names none.")
    datasets_dir: Folder | None = Field(
        None, description="Folder of your dataset specs (<name>.yaml); the built-in telemetry spec is always there."
    )


class DaskSettings(_Group):
    """TLS for Dask clusters reached by a tls:// address: the cluster's CA, and this host's certificate and key."""

    dask_tls_ca_file: File | None = Field(
        None, description="PEM file of the CA that signed the cluster's certificates."
    )
    dask_tls_cert: File | None = Field(None, description="PEM certificate this host's Dask client presents.")
    dask_tls_key: File | None = Field(None, description="PEM private key of that certificate.")


class ConveyorSettings(BaseSettings):
    """Conveyor's settings, in groups; override any of them with ``CONVEYOR_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix=_PREFIX, extra="ignore")

    project_dir: Folder = Field(PROJECT_DIR, description="The checkout: where src/ and deployments/ live.")
    state_dir: Folder = Field(
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
    serving: ServingSettings = Field(default_factory=ServingSettings, description="The model server.")
    dask: DaskSettings = Field(default_factory=DaskSettings, description="Dask clusters reached by address.")

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
    def cli_reports_dir(self) -> Path:
        """Reports of `conveyor validate`: this host's, one per checked content, never in the data store."""
        return self.state_dir / "reports"

    @property
    def default_landing_dir(self) -> Path:
        """Landing folder used when none is configured."""
        return self.stores.landing_dir or self.state_dir / "landing"

    @property
    def default_data_store(self) -> str:
        """Snapshot store used when none is configured."""
        return self.stores.data_store or str(self.state_dir / "data")

    @property
    def default_model_store(self) -> str:
        """Model store used when none is configured."""
        return self.stores.model_store or str(self.state_dir / "models")

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
        """Local copies of what this host reads from object stores (snapshots, model versions), and reports."""
        return self.task_cache_dir / "store-copies"

    def prefect_env(self) -> dict[str, str]:
        """Environment that points Prefect clients, servers and workers at this installation."""
        auth = self.stack.api_auth_string
        return {
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.prefect_home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": str(self.stack.worker_poll_seconds),
            # Tasks called outside a flow (the CLI, tests) log locally instead of warning.
            "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
            # Task results (cache records) live in the task cache, one place for every process.
            "PREFECT_LOCAL_STORAGE_PATH": str(self.task_cache_dir / "results"),
            **({"PREFECT_API_AUTH_STRING": auth.get_secret_value()} if auth else {}),
        }

    def server_env(self) -> dict[str, str]:
        """What the local server needs beyond a client's environment: the basic auth it requires, when set."""
        auth = self.stack.api_auth_string
        return {"PREFECT_SERVER_API_AUTH_STRING": auth.get_secret_value()} if auth else {}


def _expects(field: FieldInfo) -> Expects | None:
    """The Expects a field's type carries, looking through ``X | None`` and nested ``Annotated``."""
    found = [m for m in field.metadata if isinstance(m, Expects)]
    pending: list[Any] = [field.annotation]
    while pending and not found:
        annotation = pending.pop()
        if typing.get_origin(annotation) is Annotated:
            found = [m for m in annotation.__metadata__ if isinstance(m, Expects)]
        pending.extend(typing.get_args(annotation))
    return found[0] if found else None


# The root and its groups: every field of either reads CONVEYOR_<FIELD>.
_MODELS: list[type[BaseSettings]] = [ConveyorSettings] + [
    group
    for group in (field.annotation for field in ConveyorSettings.model_fields.values())
    if isinstance(group, type) and issubclass(group, BaseSettings)
]


def _field(name: str) -> FieldInfo | None:
    return next((group.model_fields[name] for group in _MODELS if name in group.model_fields), None)


def _refusal(error: ValidationError) -> str:
    """One sentence naming the variable of the first bad setting, what it must hold and what it holds."""
    problem = error.errors()[0]
    name = next((part for part in reversed(problem["loc"]) if isinstance(part, str)), "")
    variable = f"{_PREFIX}{name.upper()}"
    field = _field(name)
    expects = _expects(field) if field else None
    if expects is None:
        return f"{variable} is not valid: {problem['msg']}."
    if expects.secret:
        return f"{variable} must be {expects.text}."
    value = os.environ.get(variable, os.environ.get(variable.lower(), problem["input"]))
    reason = f" ({problem['ctx']['error']})" if problem["type"] == "value_error" else ""
    return f"{variable} must be {expects.text}; got {value!r}{reason}."


def get_settings() -> ConveyorSettings:
    """Read the settings from the environment as it is now; a bad value is one sentence naming its variable."""
    try:
        return ConveyorSettings()
    except ValidationError as error:
        raise InvalidSettingError(_refusal(error)) from None
    except _SourceError as error:
        # pydantic-settings could not even decode a variable (a group given as malformed JSON).
        named = re.search(r'field "(\w+)"', str(error))
        variable = f"{_PREFIX}{named.group(1).upper()}" if named else "A CONVEYOR_ variable"
        raise InvalidSettingError(f"{variable} could not be read: {error.__cause__ or error}.") from None


def configure_prefect_env(settings: ConveyorSettings | None = None) -> ConveyorSettings:
    """Point this process's Prefect at Conveyor's API; call before prefect is imported."""
    settings = settings or get_settings()
    try:
        # Prefect creates PREFECT_HOME itself, but not its missing parents.
        settings.prefect_home.mkdir(parents=True, exist_ok=True)
        if not os.access(settings.prefect_home, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", str(settings.prefect_home))
    except OSError as error:
        raise InvalidSettingError(
            f"{_PREFIX}STATE_DIR must be a folder Conveyor can create and write; "
            f"{settings.state_dir} is not ({error.strerror or error})."
        ) from None
    os.environ.update(settings.prefect_env())
    return settings
