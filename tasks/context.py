"""What a worker process builds once from the settings it was started with: clients and stores.

The settings are handed over by the process's entry point (``configure``), not through the Celery
configuration: Celery shows its configuration to Flower and remote-control clients, and the
settings hold credentials.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from couchfarm import factory, tls
from couchfarm.deadletters import DeadLetters, DeadLetterSink, MemoryDeadLetters
from couchfarm.resolution import Engine
from couchfarm.settings import Settings

_lock = threading.Lock()
_settings: Settings | None = None
_context: WorkerContext | None = None


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    dead_letters: DeadLetterSink
    redis: Any


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
            if _settings is None:
                raise RuntimeError("the worker was not configured with couchfarm settings")
            redis = None
            if _settings.redis_url:
                import redis as redis_lib

                url, files = _settings.redis_url, _settings.redis_tls
                redis = redis_lib.Redis.from_url(url, decode_responses=True, **tls.redis_options(url, files))
            sink: DeadLetterSink = DeadLetters(redis) if redis is not None else MemoryDeadLetters()
            engine = factory.engine(_settings, factory.couch_client(_settings))
            _context = WorkerContext(_settings, engine, sink, redis)
        return _context
