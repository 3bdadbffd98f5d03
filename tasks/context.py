"""What a worker process builds once from the settings it was started with: clients and stores."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from couchfarm import factory
from couchfarm.deadletters import DeadLetters, DeadLetterSink, MemoryDeadLetters
from couchfarm.resolution import Engine
from couchfarm.settings import Settings

_lock = threading.Lock()
_contexts: dict[int, WorkerContext] = {}


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    dead_letters: DeadLetterSink
    redis: Any


def context(app: Any) -> WorkerContext:
    """The per-process context for ``app`` (built on first use, after the fork)."""
    with _lock:
        ctx = _contexts.get(id(app))
        if ctx is None:
            settings: Settings | None = app.conf.get("couchfarm_settings")
            if settings is None:
                raise RuntimeError("the Celery app was not configured with couchfarm settings")
            redis = None
            if settings.redis_url:
                import redis as redis_lib

                redis = redis_lib.Redis.from_url(settings.redis_url, decode_responses=True)
            sink: DeadLetterSink = DeadLetters(redis) if redis is not None else MemoryDeadLetters()
            ctx = WorkerContext(
                settings, factory.engine(settings, factory.couch_client(settings)), sink, redis
            )
            _contexts[id(app)] = ctx
        return ctx
