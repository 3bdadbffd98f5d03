"""Build the library's objects from settings (used by the CLI, the tasks and the dispatcher)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from couchfarm import metrics, trace
from couchfarm.archive import Archive
from couchfarm.batch import Policy
from couchfarm.breaker import BreakerState, CircuitBreaker, RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.errors import ConfigError, CouchError
from couchfarm.http import make_session
from couchfarm.insights import InsightRecorder, InsightStore
from couchfarm.ledger import Timing
from couchfarm.models import ConflictSet
from couchfarm.redact import redact_url
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.settings import Settings
from couchfarm.tls import TLSFiles, check_handshake, redis_options

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger("couchfarm.events")


def couch_client(settings: Settings, url: str | None = None) -> CouchClient:
    """The CouchDB client for ``url`` (default: the farm's server), built from the settings.

    The TLS files are read again here: the settings may have been loaded long before, and a file
    that has gone since must fail now, naming its setting, not at the first connection.
    """
    password = settings.couch_password.get_secret_value() if settings.couch_password else None
    tls = settings.couch_tls.prepare(url or settings.couch_url)
    session = make_session(
        settings.couch_pool_size, settings.couch_user, password, tls.requests_verify(), tls.requests_cert()
    )
    breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown)
    server = redact_url(url or settings.couch_url).split("@")[-1]

    def on_request(method: str, path: str, status: int | None, seconds: float) -> None:
        metrics.on_request(method, path, status, seconds)
        metrics.BREAKER.labels(metrics.FARM[0], server).set(BREAKER_LEVEL[breaker.state])

    return CouchClient(
        url or settings.couch_url,
        session=session,
        timeout=(settings.couch_connect_timeout, settings.couch_read_timeout),
        retry=RetryPolicy(settings.couch_retries, settings.couch_backoff, settings.couch_backoff_max),
        breaker=breaker,
        on_request=on_request,
        headers=trace.headers,
        tls=tls,
    )


BREAKER_LEVEL = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


def emit(name: str, **fields: Any) -> None:
    """Engine and dispatcher events: a metric, and a log line for the ones people act on."""
    metrics.on_event(name, **fields)
    if name == "deletion_undecided":
        log.warning(
            "kept %s/%s alive: the revision tree cannot tell whether deletion %s was concurrent with %s "
            "(history compacted or cut short); resolve it by hand if it should be deleted",
            fields.get("db"),
            fields.get("doc_id"),
            ", ".join(fields.get("deletions", [])),
            ", ".join(fields.get("live", [])),
            extra={"event": name, **fields},
        )
    if name == "deep_conflict":
        log.warning(
            "deep conflict: %s/%s has %s live leaves (repeated offline edits?)",
            fields.get("db"),
            fields.get("doc_id"),
            fields.get("leaves"),
            extra={"event": name, **fields},
        )


def router(settings: Settings, strategy: str | None = None) -> Router:
    """The settings' routing, or one strategy for everything when ``strategy`` is given (CLI form)."""
    if strategy:
        return Router([], default=parse_strategy(strategy))
    return Router(settings.databases)


def engine(
    settings: Settings,
    client: CouchClient,
    strategy: str | None = None,
    interrupts: tuple[type[BaseException], ...] = (),
    on_conflict: Callable[[ConflictSet], None] | None = None,
) -> Engine:
    return Engine(
        client,
        router(settings, strategy),
        archive=Archive(client, settings.archive_db) if settings.archive_db else None,
        provenance=settings.provenance,
        schema_dir=settings.config_dir,
        deep_conflict_leaves=settings.deep_conflict_leaves,
        on_event=emit,
        interrupts=interrupts,
        on_conflict=on_conflict,
    )


def insight_store(settings: Settings, redis: Any) -> InsightStore:
    """The "why conflicts happen" counts on the state Redis ``redis``."""
    farm = farm_id(settings)
    return InsightStore(redis, farm, window=settings.insights_window, bucket=settings.insights_bucket)


def insight_recorder(settings: Settings, store: InsightStore) -> InsightRecorder:
    """The engine's ``on_conflict`` hook that counts each conflict the farm resolves in ``store``."""
    return InsightRecorder(
        store,
        settings.rule_for,
        type_field=settings.insights_type_field,
        writer_field=settings.writer_field,
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    """Backoff between document retries (not HTTP retries): full jitter, doubling, capped."""
    return RetryPolicy(
        attempts=settings.max_retries + 1, base=settings.retry_backoff, cap=settings.retry_backoff_max
    )


def policy(settings: Settings, *, dry_run: bool = False) -> Policy:
    """How a batch's deliveries are retried, guarded and kept alive."""
    timing = Timing.from_settings(settings)
    return Policy(
        max_retries=settings.max_retries,
        max_deliveries=settings.max_deliveries,
        backoff=retry_policy(settings),
        beat_interval=timing.beat_interval,
        beat_timeout=timing.beat_timeout,
        dry_run=dry_run,
    )


def redis_client(url: str, tls: TLSFiles | None = None, sentinel_master: str | None = None) -> Redis:
    """The state Redis client (decoded strings, health checks); for ``rediss://`` one ping at start
    turns a bad certificate into a clear ``TLSError`` now, not at the first command. A
    ``sentinel://h1:p1;sentinel://h2:p2/db`` URL (kombu's form) asks the sentinels for the master
    named ``sentinel_master`` and follows it through failovers."""
    import redis

    if url.lower().startswith("sentinel://"):
        return _sentinel_client(url, sentinel_master or "mymaster")
    files = tls or TLSFiles.for_settings("redis")
    client = redis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30, **redis_options(url, files)
    )
    if url.lower().startswith("rediss://"):
        check_handshake(client.ping, url, files)
    return client


def _sentinel_client(url: str, master: str) -> Redis:
    from urllib.parse import urlsplit

    from redis.sentinel import Sentinel

    parts = [urlsplit(part) for part in url.split(";") if part.strip()]
    hosts = [(p.hostname or "127.0.0.1", p.port or 26379) for p in parts]
    auth = next((p for p in parts if p.password), None)
    db = next((int(p.path.strip("/")) for p in parts if p.path.strip("/")), 0)
    timeouts = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
    sentinel = Sentinel(hosts, sentinel_kwargs=dict(timeouts), **timeouts)  # type: ignore[no-untyped-call]
    client: Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        master,
        decode_responses=True,
        health_check_interval=30,
        db=db,
        username=auth.username if auth else None,
        password=auth.password if auth else None,
    )
    return client


def state_redis(settings: Settings) -> Redis:
    """The state Redis client of ``settings``; ``ConfigError`` naming the setting when there is none."""
    if not settings.redis_url:
        raise ConfigError(
            "this command needs the state Redis: set COUCHFARM_REDIS_URL (or redis_url in the file)",
            field="redis_url",
        )
    return redis_client(settings.redis_url, settings.redis_tls, settings.redis_sentinel_master)


def farm_id(settings: Settings, client: CouchClient | None = None) -> str:
    """The farm's name: the ``farm`` setting, else one derived from the CouchDB server's ``uuid``
    (``GET /``; stable for a server, shared by the nodes of a cluster configured alike)."""
    if settings.farm:
        return settings.farm
    client = client or couch_client(settings)
    server = redact_url(settings.couch_url)
    try:
        uuid = re.sub(r"[^0-9a-f]", "", str(client.server_info().get("uuid", "")).lower())
    except CouchError as exc:
        raise ConfigError(
            f"cannot name the farm from {server} ({type(exc).__name__}: {exc}); set COUCHFARM_FARM",
            field="farm",
        ) from None
    if len(uuid) < 8:
        raise ConfigError(
            f"cannot name the farm: {server} has no uuid in GET /; set COUCHFARM_FARM", field="farm"
        )
    return f"cf-{uuid[:12]}"


def with_farm(settings: Settings, client: CouchClient | None = None) -> Settings:
    """The settings with ``farm`` filled in (see ``farm_id``)."""
    return settings if settings.farm else settings.model_copy(update={"farm": farm_id(settings, client)})
