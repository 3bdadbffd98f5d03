"""Wiring for the farm's processes: the farm's name, Redis and its durable copies, the Celery app, the
hand-off to the workers, the names to follow."""

from __future__ import annotations

import logging
import re
import threading
import time
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
BATCH_ID = re.compile(r"'batch_id': '([0-9a-f]+)'")  #: in a resolve_batch message's kwargsrepr header


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
    on the farm's queue, and which batches wait in that queue, for the lost-message check
    (couchfarm/dispatch/recovery.py)."""

    def __init__(self, app: Celery, settings: Settings) -> None:
        self.app = app
        self.farm = str(settings.farm)
        self.queue = queue_name(settings)
        self._lock = threading.Lock()
        self._conn: Any = None
        self._queued: set[str] | None = None
        self._queued_at = 0.0

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

    def queued(self) -> set[str] | None:
        """The ids of the batches whose message waits in the farm's queue now (every priority list
        kombu keeps for it on Redis; the batch id is in each message's ``kwargsrepr`` header), read
        at most once a second for all the dispatcher's databases; None when the broker cannot tell."""
        with self._lock:
            now = time.monotonic()
            if self._queued is not None and now - self._queued_at < 1.0:
                return self._queued
            try:
                if self._conn is None:
                    self._conn = self.app.connection_for_read()
                channel = self._conn.default_channel
                lists = {self.queue} | {f"{self.queue}{channel.sep}{p}" for p in channel.priority_steps if p}
                pipe = channel.client.pipeline()
                for name in sorted(lists):
                    pipe.lrange(name, 0, -1)
                raw = [
                    m.decode() if isinstance(m, bytes) else str(m) for items in pipe.execute() for m in items
                ]
            except Exception as exc:
                log.debug("queue contents unknown: %s", exc)
                if self._conn is not None:
                    self._conn.release()
                self._conn, self._queued = None, None
                return None
            self._queued, self._queued_at = set(BATCH_ID.findall("\n".join(raw))), now
            return self._queued


def follow_names(settings: Settings, dbs: Iterable[str]) -> list[str]:
    """``--db`` values when given, else the names and globs of the settings' database rules."""
    names = list(dbs) or [rule.name for rule in settings.databases]
    if not names:
        raise ConfigError(
            "no databases to follow: give --db NAME_OR_GLOB, COUCHFARM_DATABASES or databases: in the file",
            field="databases",
        )
    return names
