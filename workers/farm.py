"""Wiring for the farm's processes: the farm's name, Redis and its durable copies, the Celery app, the
hand-off to the workers, the names to follow."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celery import Celery

from couchfarm import factory
from couchfarm.deadletters import DeadLetters
from couchfarm.durable import Durable
from couchfarm.errors import ConfigError
from couchfarm.ledger import Batch, Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState

log = logging.getLogger("couchfarm.farm")


@dataclass
class Stores:
    """Everything one farm keeps: in Redis (fast) and in its CouchDB server (durable)."""

    settings: Settings  #: with ``farm`` filled in
    state: FarmState
    ledger: Ledger
    dead_letters: DeadLetters
    durable: Durable


def stores(settings: Settings, *, restore: bool = True) -> Stores:
    """The farm's stores; with ``restore``, Redis gets back the durable copies if it lost them."""
    settings = factory.with_farm(settings)
    farm = str(settings.farm)
    redis = factory.state_redis(settings)
    durable = Durable(factory.couch_client(settings), settings.state_db, farm)
    state = FarmState(redis, farm, mirror=durable)
    dead = DeadLetters(redis, farm, mirror=durable)
    if restore:
        durable.restore(state, dead)
    return Stores(settings, state, Ledger(redis, farm, clock=state.clock), dead, durable)


def farm_state(settings: Settings) -> FarmState:
    """Leases, checkpoints and pauses, without the durable restore (that needs CouchDB too)."""
    return stores(settings, restore=False).state


def queue_name(settings: Settings) -> str:
    """The farm's Celery queue (and routing key): workers of other farms never consume it."""
    if not settings.farm:
        raise ConfigError("internal: the farm's name was not resolved", field="farm")
    return f"couchfarm.{settings.farm}"


def celery_app(settings: Settings) -> Celery:
    from workers.celery_app import app, configure

    return configure(app, settings)


class CeleryBroker:
    """The dispatcher's hand-off: one ``couchfarm.resolve_batch`` message per delivery (by wire name),
    on the farm's queue, and the depth of that queue for the lost-message check
    (couchfarm/dispatch/recovery.py)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.farm = str(settings.farm)
        self.queue = queue_name(settings)
        self._lock = threading.Lock()
        self._conn: Any = None

    def send(self, batch: Batch) -> None:
        with self._lock:
            self.app.send_task(
                "couchfarm.resolve_batch",
                args=[batch.db, batch.pending, batch.correlation_id],
                kwargs={"batch_id": batch.id, "attempt": batch.attempt, "farm": self.farm},
                headers={"traceparent": batch.traceparent},
                queue=self.queue,
                routing_key=self.queue,
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
        raise ConfigError(
            "no databases to follow: give --db NAME_OR_GLOB, COUCHFARM_DATABASES or databases: in the file",
            field="databases",
        )
    return names
