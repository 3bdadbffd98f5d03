"""One typed settings object, read once at the edge (CLI or process start) and passed down.

Sources, highest priority first: explicit overrides (CLI flags), ``COUCHFARM_*`` environment
variables, then the YAML file given by ``--config`` / ``COUCHFARM_CONFIG``. Every setting has an
environment variable (``COUCHFARM_<FIELD>``) and a file key (``<field>``). A bad value fails at start
with a ``ConfigError`` that names the field and where it came from (the variable, or file:line).
The library never reads the environment itself: only ``Settings.load`` does, called by ``workers``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from couchfarm import tls
from couchfarm.errors import ConfigError
from couchfarm.names import db_name_problem
from couchfarm.settings_checks import ENV_PREFIX, Origins, contradictions
from couchfarm.tls import TLSFiles
from couchfarm.urls import url_problem
from couchfarm.yamlfile import read_yaml

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix")
T = TypeVar("T")
Deletion = Literal["update_wins", "tombstone_wins"]
MAX_BUCKETS = 5000  #: insights_window / insights_bucket


class StrategySpec(BaseModel):
    """A strategy with its options, the document schema and the deletion policy that go with it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    strategy: str = "winner"
    options: dict[str, Any] = Field(default_factory=dict)
    schema_path: str | None = Field(default=None, alias="schema")  #: JSON Schema file or module:Model
    deletion: Deletion = "update_wins"


class TypeRule(StrategySpec):
    """A strategy for one document type: a field value (``field``/``value``) or an id prefix."""

    field: str = "type"
    value: str | None = None
    id_prefix: str | None = None


class DatabaseRule(StrategySpec):
    """Which databases (a name or a glob) follow which strategy, with per-type routing."""

    name: str
    types: list[TypeRule] = Field(default_factory=list)
    paused: bool = False  #: leave conflicts for people (``conflicts pick/edit``)
    #: merge conflicted ``_design/`` documents with this rule's strategy; off: dead-letter them
    #: (design documents are code: views and validate_doc_update functions)
    resolve_design_docs: bool = False

    @field_validator("name")
    @classmethod
    def _legal_name(cls, value: str) -> str:
        return _refuse_if(db_name_problem(value, globs=True), value)


#: The variables of the ``Settings.load`` running in this thread (or task); none outside a load.
_LOADING: ContextVar[Mapping[str, str] | None] = ContextVar("couchfarm_settings_env", default=None)


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' source of environment variables, fed from a given mapping instead of
    ``os.environ``: the ``COUCHFARM_*`` variables ``Settings.load`` was given."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self.env = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {(k if self.case_sensitive else k.lower()): v for k, v in self.env.items()}


class Settings(BaseSettings):
    """Every setting, typed. Built by :meth:`load` from a file, variables and overrides; built
    directly (``Settings(farm="x")``) it takes its arguments and the defaults, never the environment."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", populate_by_name=True)

    # CouchDB
    couch_url: str = "http://127.0.0.1:5984"
    couch_user: str | None = None
    couch_password: SecretStr | None = None
    couch_connect_timeout: float = Field(3.05, gt=0)
    couch_read_timeout: float = Field(65.0, gt=0)
    couch_pool_size: int = Field(10, ge=1, le=256)
    couch_retries: int = Field(4, ge=1, le=20)  #: attempts per request on transient failures
    couch_backoff: float = Field(0.2, ge=0)
    couch_backoff_max: float = Field(10.0, ge=0)
    breaker_threshold: int = Field(5, ge=1)
    breaker_cooldown: float = Field(30.0, ge=0)
    # TLS to CouchDB (https:// URLs); files are PEM and read at start (see couchfarm/tls.py)
    couch_ca_file: str | None = None  #: CA bundle of the servers' certificates (default: the system's)
    couch_cert_file: str | None = None  #: client certificate for mutual TLS (may hold the key too)
    couch_key_file: str | None = Field(None, validate_default=True)  #: unencrypted key of couch_cert_file
    couch_verify: bool = True  #: check the server's certificate and name; off logs a warning at start

    # The farm: one per CouchDB cluster; every Redis key and the Celery queue carry its name
    farm: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]{0,47}$")  #: default: from the server's uuid
    state_db: str = Field(
        "couchfarm_state", pattern=r"^[a-z][a-z0-9_$()+/-]*$"
    )  #: durable dead letters, pauses

    # Redis and Celery
    redis_url: str | None = None
    broker_url: str | None = None  #: defaults to redis_url
    result_url: str | None = None  #: defaults to redis_url
    redis_sentinel_master: str | None = None  #: the master's name when the URLs are sentinel:// ones
    # TLS to Redis (rediss:// URLs): the state client, the broker and the result backend
    redis_ca_file: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = Field(None, validate_default=True)
    redis_verify: bool = True

    # Resolution
    databases: Annotated[list[DatabaseRule], NoDecode] = Field(default_factory=list)
    batch_size: int = Field(50, ge=1, le=5000)  #: documents per batch at a trickle (and the smallest)
    batch_max_size: int = Field(500, ge=1, le=5000)  #: documents per batch while a backlog is read
    max_retries: int = Field(3, ge=0, le=10)  #: retries of a document after the first attempt
    retry_backoff: float = Field(1.0, ge=0)  #: seconds; full jitter, doubled per retry
    retry_backoff_max: float = Field(60.0, ge=0)
    archive_db: str | None = None  #: audit database for losing leaves (enables ``couchfarm undo``)
    provenance: bool = False  #: stamp merges with ``_couchfarm`` provenance (off by default)
    deep_conflict_leaves: int = Field(3, ge=1)  #: more live leaves than this raises an alert

    # Dispatcher
    lease_ttl: float = Field(30.0, gt=0)  #: seconds
    batch_max_wait: float = Field(1.0, ge=0)
    feed_deadline: float = Field(10.0, gt=0)  #: longpoll client-side deadline, seconds
    max_queued_batches: int = Field(100, ge=1)
    max_deliveries: int = Field(3, ge=1)  #: deliveries of one batch before it is dead-lettered
    discovery_interval: float = Field(10.0, gt=0)
    feed_readers: int = Field(4, ge=1, le=64)  #: feed reads at once per dispatcher, shared by its databases
    change_poll_interval: float = Field(0.5, gt=0)  #: seconds between looks for changed databases
    task_time_limit: float = Field(300.0, gt=0)

    # Operations
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    metrics_port: int | None = Field(None, ge=0, le=65535)
    flower_user: str | None = None
    flower_password: SecretStr | None = None
    ui_user: str | None = None  #: ``couchfarm ui`` basic auth (required unless ``--unauthenticated``)
    ui_password: SecretStr | None = None
    ui_url: str | None = None  #: where people reach ``couchfarm ui``: dead letters in Flower link to it

    # "Why conflicts happen" (couchfarm/insights.py): counts per database in Redis, a bounded window
    insights_window: float = Field(7 * 86400.0, gt=0)  #: seconds of history kept
    insights_bucket: float = Field(600.0, gt=0)  #: seconds per bucket (the charts' resolution)
    insights_type_field: str = "type"  #: a document's type when no type rule of its database matches
    writer_field: str | None = None  #: body field naming who wrote a leaf (``updated_by``, ``device``)

    _config_dir: str | None = PrivateAttr(default=None)
    _origins: Origins | None = PrivateAttr(default=None)

    @property
    def config_dir(self) -> str | None:
        """The folder of the settings file: relative schema paths are looked up there too."""
        return self._config_dir

    @property
    def config_file(self) -> str | None:
        """The settings file these settings were loaded from (as given), if any."""
        return str(self._origins.config) if self._origins and self._origins.config else None

    def with_overrides(self, **overrides: Any) -> Settings:
        """The same file and variables loaded again with more ``overrides``: a value known only at run
        time (the URL of the Redis ``couchfarm run`` starts), checked like any other."""
        if self._origins is None:
            return self.model_copy(update=overrides)
        origins = self._origins
        return type(self).load(origins.config, env=origins.env, **{**origins.overrides, **overrides})

    def source_of(self, name: str) -> str:
        """Where setting ``name`` came from: ``command line``, ``environment variable X``,
        ``file:line`` or ``default`` (for messages about a value that turned out wrong later)."""
        return self._origins.of_field(name) if self._origins else "default"

    @property
    def couch_tls(self) -> TLSFiles:
        """The CouchDB TLS files, named by their settings for error messages."""
        return TLSFiles.for_settings(
            "couch", self.couch_ca_file, self.couch_cert_file, self.couch_key_file, self.couch_verify
        )

    @property
    def redis_tls(self) -> TLSFiles:
        """The Redis TLS files (broker, result backend and state client alike)."""
        return TLSFiles.for_settings(
            "redis", self.redis_ca_file, self.redis_cert_file, self.redis_key_file, self.redis_verify
        )

    @field_validator("couch_ca_file", "redis_ca_file", "couch_cert_file", "redis_cert_file")
    @classmethod
    def _readable(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Read at load, so a bad path fails now naming the setting and its source, not at a connect."""
        problem = tls.ca_problem if str(info.field_name).endswith("_ca_file") else tls.file_problem
        return tls.checked(value, problem(value) if value else None)

    @field_validator("couch_key_file", "redis_key_file")
    @classmethod
    def _matching_key(cls, value: str | None, info: ValidationInfo) -> str | None:
        """The key must open and belong to the certificate (checked here, where both are known)."""
        cert_name = f"{str(info.field_name).split('_')[0]}_cert_file"
        if cert_name not in info.data:  # the certificate failed its own check: reported there
            return value
        return tls.checked(value, tls.pair_problem(info.data[cert_name], value, cert_name))

    @field_validator("couch_url")
    @classmethod
    def _couch_url(cls, value: str) -> str:
        return _refuse_if(url_problem(value, ("http", "https"), "http://127.0.0.1:5984"), value)

    @field_validator("redis_url", "broker_url", "result_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.lower().startswith("sentinel://"):  # kombu's form: every sentinel, ';'-separated
            for part in (p for p in value.split(";") if p.strip()):
                _refuse_if(url_problem(part, ("sentinel",), "sentinel://10.0.0.1:26379"), value)
            return value
        return _refuse_if(url_problem(value, REDIS_SCHEMES, "redis://127.0.0.1:6379/0"), value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        problem = f"{value!r} is not a log level: use one of {', '.join(LOG_LEVELS)}"
        return _refuse_if(None if level in LOG_LEVELS else problem, level)

    @field_validator("insights_bucket")
    @classmethod
    def _few_buckets(cls, value: float, info: ValidationInfo) -> float:
        """The window is read bucket by bucket: keep it to a number a page can read at once."""
        window = info.data.get("insights_window")
        if window is not None and window / value > MAX_BUCKETS:
            raise ValueError(f"insights_window / insights_bucket must be at most {MAX_BUCKETS} buckets")
        return value

    @field_validator("databases", mode="before")
    @classmethod
    def _names_or_rules(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [{"name": n.strip()} for n in value.split(",") if n.strip()]
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, MappingEnvSource(settings_cls, _LOADING.get() or {}))

    @classmethod
    def load(
        cls,
        config: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build the settings from a file, the environment and overrides; ``ConfigError`` if bad.

        ``env``: the variables to read (``os.environ`` when not given); nothing else is read, and
        ``os.environ`` is never changed, so loads in several threads do not see each other's."""
        env = os.environ if env is None else env
        config = config or env.get(f"{ENV_PREFIX}CONFIG") or None
        data, lines = ({}, {}) if config is None else read_yaml(Path(config))
        for key in list(data):
            if f"{ENV_PREFIX}{key.upper()}" in env:
                data.pop(key)  # the environment wins over the file
        data.update({k: v for k, v in overrides.items() if v is not None})
        origins = Origins(config, lines, env, overrides)
        loading = _LOADING.set(env)
        try:
            settings = cls(**data)
        except ValidationError as exc:
            raise _config_error(exc, origins) from None
        finally:
            _LOADING.reset(loading)
        settings._config_dir = str(Path(config).resolve().parent) if config else None
        settings._origins = origins
        clashes = contradictions(settings, origins)
        if clashes:
            raise ConfigError(
                "settings contradict each other: " + "; ".join(message for _, message in clashes),
                field=clashes[0][0],
                source=origins.of_field(clashes[0][0].split(".")[0]),
            )
        return settings

    def __repr_args__(self) -> Any:
        from couchfarm.redact import redact_url

        for name, value in super().__repr_args__():
            yield name, redact_url(value) if isinstance(value, str) and "://" in value else value

    def rule_for(self, db: str) -> DatabaseRule | None:
        """The first database rule whose name or glob matches ``db``."""
        from fnmatch import fnmatchcase

        return next((r for r in self.databases if fnmatchcase(db, r.name)), None)


def _refuse_if(problem: str | None, value: T) -> T:
    """A pydantic error carrying ``problem`` as is (no "Value error," prefix, no input echoed)."""
    if problem:
        raise PydanticCustomError("setting", "{problem}", {"problem": problem})
    return value


def _config_error(exc: ValidationError, origins: Origins) -> ConfigError:
    problems, first_field, first_source = [], "", ""
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        source = origins.of(loc)
        problems.append(f"{field}: {err['msg']} (from {source})")
        first_field, first_source = first_field or field, first_source or source
    return ConfigError("invalid settings: " + "; ".join(problems), field=first_field, source=first_source)
