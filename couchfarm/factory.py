"""Build the library's objects from settings (used by the CLI, the tasks and the dispatcher)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from couchfarm import metrics, trace
from couchfarm.archive import Archive
from couchfarm.batch import Policy
from couchfarm.breaker import BreakerState, CircuitBreaker, RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.http import make_session
from couchfarm.insights import InsightRecorder, InsightStore
from couchfarm.ledger import Timing
from couchfarm.models import ConflictSet
from couchfarm.redact import redact_url
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.settings import Settings
from couchfarm.tls import TLSFiles, check_handshake, redis_options

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
        metrics.BREAKER.labels(server).set(BREAKER_LEVEL[breaker.state])

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
    return InsightStore(redis, window=settings.insights_window, bucket=settings.insights_bucket)


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


def redis_client(url: str, tls: TLSFiles | None = None) -> Any:
    """The state Redis client (decoded strings, health checks); for ``rediss://`` one ping at start
    turns a bad certificate into a clear ``TLSError`` now, not at the first command."""
    import redis

    files = tls or TLSFiles.for_settings("redis")
    client = redis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30, **redis_options(url, files)
    )
    if url.lower().startswith("rediss://"):
        check_handshake(client.ping, url, files)
    return client
