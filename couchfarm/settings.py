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
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
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
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from couchfarm import tls
from couchfarm.errors import ConfigError
from couchfarm.tls import TLSFiles

ENV_PREFIX = "COUCHFARM_"
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


class Settings(BaseSettings):
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

    # Redis and Celery
    redis_url: str | None = None
    broker_url: str | None = None  #: defaults to redis_url
    result_url: str | None = None  #: defaults to redis_url
    # TLS to Redis (rediss:// URLs): the state client, the broker and the result backend
    redis_ca_file: str | None = None
    redis_cert_file: str | None = None
    redis_key_file: str | None = Field(None, validate_default=True)
    redis_verify: bool = True

    # Resolution
    databases: Annotated[list[DatabaseRule], NoDecode] = Field(default_factory=list)
    batch_size: int = Field(50, ge=1, le=5000)
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

    @property
    def config_dir(self) -> str | None:
        """The folder of the settings file: relative schema paths are looked up there too."""
        return self._config_dir

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
        return (init_settings, env_settings)

    @classmethod
    def load(
        cls,
        config: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build the settings from a file, the environment and overrides; ``ConfigError`` if bad."""
        env = os.environ if env is None else env
        config = config or env.get(f"{ENV_PREFIX}CONFIG") or None
        data, lines = ({}, {}) if config is None else read_yaml(Path(config))
        for key in list(data):
            if f"{ENV_PREFIX}{key.upper()}" in env:
                data.pop(key)  # the environment wins over the file
        data.update({k: v for k, v in overrides.items() if v is not None})
        saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        try:
            _swap_env(saved, {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)})
            settings = cls(**data)
            settings._config_dir = str(Path(config).resolve().parent) if config else None
            return settings
        except ValidationError as exc:
            raise _config_error(exc, config, lines, env, overrides) from None
        finally:
            _swap_env({k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}, saved)

    def __repr_args__(self) -> Any:
        from couchfarm.redact import redact_url

        for name, value in super().__repr_args__():
            yield name, redact_url(value) if isinstance(value, str) and "://" in value else value

    def rule_for(self, db: str) -> DatabaseRule | None:
        """The first database rule whose name or glob matches ``db``."""
        from fnmatch import fnmatchcase

        return next((r for r in self.databases if fnmatchcase(db, r.name)), None)


def _swap_env(remove: Mapping[str, str], add: Mapping[str, str]) -> None:
    for key in remove:
        os.environ.pop(key, None)
    os.environ.update(add)


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[tuple[Any, ...], int]]:
    """A YAML mapping and the 1-based line of every key path in it."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}", source=str(path)) from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {exc}", source=where) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings", source=str(path))
    return data, key_lines(node)


def key_lines(
    node: Any, path: tuple[Any, ...] = (), lines: dict[tuple[Any, ...], int] | None = None
) -> dict[tuple[Any, ...], int]:
    """The 1-based line of every key path of a composed YAML node: a key's own line (not its
    value's, as for block values), so errors point at the key that is wrong."""
    lines = {} if lines is None else lines
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*path, key.value)] = key.start_mark.line + 1
            key_lines(value, (*path, key.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key_lines(item, (*path, i), lines)
    return lines


def _config_error(
    exc: ValidationError,
    config: str | Path | None,
    lines: dict[tuple[Any, ...], int],
    env: Mapping[str, str],
    overrides: Mapping[str, Any],
) -> ConfigError:
    problems, first_field, first_source = [], "", ""
    for err in exc.errors():
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc)
        var = f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else ""
        if loc and overrides.get(str(loc[0])) is not None:
            source = "command line"
        elif var in env:
            source = f"environment variable {var}"
        elif config is not None:
            line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)
            source = f"{config}:{line}" if line else str(config)
        else:
            source = "defaults"
        problems.append(f"{field}: {err['msg']} (from {source})")
        first_field, first_source = first_field or field, first_source or source
    return ConfigError("invalid settings: " + "; ".join(problems), field=first_field, source=first_source)
