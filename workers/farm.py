"""Wiring for the farm's processes: Redis, the Celery app, the send function, the dispatcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from celery import Celery

from couchfarm.settings import Settings
from couchfarm.state import FarmState
from workers.follower import Send

log = logging.getLogger("couchfarm.farm")


def redis_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)


def farm_state(settings: Settings) -> FarmState:
    if not settings.redis_url:
        from couchfarm.errors import ConfigError

        raise ConfigError(
            "this command needs Redis: set COUCHFARM_REDIS_URL (or redis_url in the file)", field="redis_url"
        )
    return FarmState(redis_client(settings.redis_url))


def celery_app(settings: Settings) -> Celery:
    from workers.celery_app import app, configure

    return configure(app, settings)


def sender(app: Celery) -> Send:
    """The dispatcher's hand-off: one ``resolve_batch`` message per batch (by wire name)."""
    lock = threading.Lock()

    def send(db: str, docs: list[str], correlation_id: str, batch_id: str) -> None:
        with lock:
            app.send_task(
                "couchfarm.resolve_batch",
                args=[db, docs, correlation_id],
                kwargs={"batch_id": batch_id},
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
