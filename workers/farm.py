"""Wiring for the farm's processes: Redis, the Celery app, the send function, the dispatcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from celery import Celery

from couchfarm.settings import Settings
from couchfarm.state import Batch, FarmState
from couchfarm.tls import TLSFiles, check_handshake
from couchfarm.tls import redis_options as tls_options
from workers.follower import Send

log = logging.getLogger("couchfarm.farm")


def redis_client(url: str, tls: TLSFiles | None = None) -> Any:
    """The state client; for ``rediss://`` one ping at start turns a bad certificate into a clear
    ``TLSError`` now, instead of a raw connection error at the first command."""
    import redis

    files = tls or TLSFiles.for_settings("redis")
    client = redis.Redis.from_url(
        url, decode_responses=True, health_check_interval=30, **tls_options(url, files)
    )
    if url.lower().startswith("rediss://"):
        check_handshake(client.ping, url, files)
    return client


def farm_state(settings: Settings) -> FarmState:
    if not settings.redis_url:
        from couchfarm.errors import ConfigError

        raise ConfigError(
            "this command needs Redis: set COUCHFARM_REDIS_URL (or redis_url in the file)", field="redis_url"
        )
    return FarmState(redis_client(settings.redis_url, settings.redis_tls))


def celery_app(settings: Settings) -> Celery:
    from workers.celery_app import app, configure

    return configure(app, settings)


def sender(app: Celery) -> Send:
    """The dispatcher's hand-off: one ``resolve_batch`` message per batch (by wire name)."""
    lock = threading.Lock()

    def send(batch: Batch) -> None:
        with lock:
            app.send_task(
                "couchfarm.resolve_batch",
                args=[batch.db, batch.docs, batch.correlation_id],
                kwargs={"batch_id": batch.id},
                headers={"traceparent": batch.traceparent},
            )

    return send


def follow_names(settings: Settings, dbs: Iterable[str]) -> list[str]:
    """``--db`` values when given, else the names and globs of the settings' database rules."""
    names = list(dbs) or [rule.name for rule in settings.databases]
    if not names:
        from couchfarm.errors import ConfigError

        raise ConfigError(
            "no databases to follow: give --db NAME_OR_GLOB, COUCHFARM_DATABASES or databases: in the file",
            field="databases",
        )
    return names
