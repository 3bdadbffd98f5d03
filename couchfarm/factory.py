"""Build the library's objects from settings (used by the CLI, the tasks and the dispatcher)."""

from __future__ import annotations

import logging
from typing import Any

from couchfarm import metrics, trace
from couchfarm.archive import Archive
from couchfarm.breaker import BreakerState, CircuitBreaker, RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.http import make_session
from couchfarm.redact import redact_url
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.settings import Settings

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


def engine(settings: Settings, client: CouchClient, strategy: str | None = None) -> Engine:
    return Engine(
        client,
        router(settings, strategy),
        archive=Archive(client, settings.archive_db) if settings.archive_db else None,
        provenance=settings.provenance,
        schema_dir=settings.config_dir,
        deep_conflict_leaves=settings.deep_conflict_leaves,
        on_event=emit,
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    """Backoff between document retries (not HTTP retries): full jitter, doubling, capped."""
    return RetryPolicy(
        attempts=settings.max_retries + 1, base=settings.retry_backoff, cap=settings.retry_backoff_max
    )
