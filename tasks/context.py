"""What a worker process builds once from the settings it was started with: clients and stores.

The settings are handed over by the process's entry point (``configure``), not through the Celery
configuration: Celery shows its configuration to Flower and remote-control clients, and the
settings hold credentials.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from celery.exceptions import SoftTimeLimitExceeded

from couchfarm import factory
from couchfarm.batch import BatchLife, LedgerRecord
from couchfarm.deadletters import DeadLetter, DeadLetters
from couchfarm.durable import Durable
from couchfarm.insights import InsightRecorder
from couchfarm.ledger import Ledger
from couchfarm.resolution import Engine
from couchfarm.settings import Settings

if TYPE_CHECKING:
    from redis import Redis

_lock = threading.Lock()
_settings: Settings | None = None
_context: WorkerContext | None = None


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    dead_letters: DeadLetters
    redis: Redis  #: the state Redis (decoded strings)
    life: BatchLife
    insights: InsightRecorder


def configure(settings: Settings) -> None:
    """Called once by the worker's entry point; the context itself is built lazily after the fork."""
    global _settings, _context
    with _lock:
        _settings, _context = settings, None


def current_settings() -> Settings | None:
    return _settings


def context() -> WorkerContext:
    """The per-process context (built on first use, so after the prefork pool has forked)."""
    global _context
    with _lock:
        if _context is None:
            _context = _build(_settings)
        return _context


def _build(settings: Settings | None) -> WorkerContext:
    if settings is None:
        raise RuntimeError("the worker was not configured with couchfarm settings")
    client = factory.couch_client(settings)
    settings = factory.with_farm(settings, client)  # the worker's entry point has resolved it already
    farm = str(settings.farm)
    redis = factory.state_redis(settings)  # the worker refuses to start without one (workers/cli_farm.py)
    store = DeadLetters(redis, farm, mirror=Durable(client, settings.state_db, farm))
    interrupts = (SoftTimeLimitExceeded,)
    insights = factory.insight_recorder(settings, factory.insight_store(settings, redis))
    engine = factory.engine(settings, client, interrupts=interrupts, on_conflict=insights)
    policy = factory.policy(settings)
    record = LedgerRecord(Ledger(redis, farm), policy.beat_timeout)
    life = BatchLife(engine, record, store, policy, on_dead_letter=show_in_flower, interrupts=interrupts)
    return WorkerContext(settings, engine, store, redis, life, insights)


def show_in_flower(entry: DeadLetter) -> None:
    """One ``couchfarm.dead_letter`` task per stored dead letter, on the farm's queue: Flower shows
    its event (with the farm in its arguments). With ``ui_url`` set, its ``ui_link`` keyword
    argument is the entry's page in ``couchfarm ui``."""
    from tasks.deadletter import dead_letter, ui_link

    settings = _settings if _settings is not None and _settings.farm else context().settings
    farm = str(settings.farm)
    extra = {"ui_link": ui_link(settings.ui_url, entry.id)} if settings.ui_url else {}
    dead_letter.apply_async(
        args=[entry.db, entry.doc_id, entry.error.value, entry.reason, entry.id, entry.correlation_id],
        kwargs={"farm": farm, **extra},
        queue=f"couchfarm.{farm}",
    )
