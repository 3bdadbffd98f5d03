"""Wiring for the farm's processes: Redis, the Celery app, the send function, the dispatcher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from celery import Celery

from couchfarm import factory
from couchfarm.ledger import Batch, Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState

log = logging.getLogger("couchfarm.farm")


def state_redis(settings: Settings) -> Any:
    """The state Redis client; ``ConfigError`` naming the setting when there is none."""
    if not settings.redis_url:
        from couchfarm.errors import ConfigError

        raise ConfigError(
            "this command needs Redis: set COUCHFARM_REDIS_URL (or redis_url in the file)", field="redis_url"
        )
    return factory.redis_client(settings.redis_url, settings.redis_tls)


def farm_state(settings: Settings) -> FarmState:
    return FarmState(state_redis(settings))


def ledger(state: FarmState) -> Ledger:
    return Ledger(state.redis, clock=state.clock)


def celery_app(settings: Settings) -> Celery:
    from workers.celery_app import app, configure

    return configure(app, settings)


class CeleryBroker:
    """The dispatcher's hand-off: one ``couchfarm.resolve_batch`` message per delivery (by wire name),
    and the depth of the farm's queue for the lost-message check (couchfarm/dispatch/recovery.py)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.queue = str(app.conf.task_default_queue)
        self._lock = threading.Lock()
        self._conn: Any = None

    def send(self, batch: Batch) -> None:
        with self._lock:
            self.app.send_task(
                "couchfarm.resolve_batch",
                args=[batch.db, batch.pending, batch.correlation_id],
                kwargs={"batch_id": batch.id, "attempt": batch.attempt},
                headers={"traceparent": batch.traceparent},
            )

    def backlog(self) -> int | None:
        """Messages waiting in the queue (kombu's ``queue_declare`` counts every priority list on
        Redis); None when the broker cannot tell now."""
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self.app.connection_for_read()
                return int(self._conn.default_channel.queue_declare(queue=self.queue).message_count)
            except Exception as exc:
                log.debug("queue depth unknown: %s", exc)
                if self._conn is not None:
                    self._conn.release()
                self._conn = None
                return None


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
