"""Build the library's objects from settings (used by the CLI, the tasks and the dispatcher)."""

from __future__ import annotations

from couchfarm.archive import Archive
from couchfarm.breaker import CircuitBreaker, RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.http import make_session
from couchfarm.resolution import Engine
from couchfarm.resolvers import Router, parse_strategy
from couchfarm.settings import Settings


def couch_client(settings: Settings, url: str | None = None) -> CouchClient:
    """The CouchDB client for ``url`` (default: the farm's server), built from the settings."""
    password = settings.couch_password.get_secret_value() if settings.couch_password else None
    session = make_session(settings.couch_pool_size, settings.couch_user, password)
    return CouchClient(
        url or settings.couch_url,
        session=session,
        timeout=(settings.couch_connect_timeout, settings.couch_read_timeout),
        retry=RetryPolicy(settings.couch_retries, settings.couch_backoff, settings.couch_backoff_max),
        breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown),
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
    )


def retry_policy(settings: Settings) -> RetryPolicy:
    """Backoff between document retries (not HTTP retries): full jitter, doubling, capped."""
    return RetryPolicy(
        attempts=settings.max_retries + 1, base=settings.retry_backoff, cap=settings.retry_backoff_max
    )
