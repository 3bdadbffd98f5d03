"""The Celery application, configured for safety on a Redis broker (docs/celery-notes.md; the batch
ledger that makes redelivery safe: docs/architecture.md, "The life of a batch").

Settings are read once at process start and handed to the tasks through ``tasks.context.configure``,
never through ``app.conf`` (Celery shows its configuration to Flower and remote-control clients).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_process_shutdown

from couchfarm.settings import Settings
from tasks import context as tasks_context
from workers.logs import make_handler

# Redis has no real acknowledgement: kombu re-queues any message unacknowledged for longer than the
# visibility timeout, so a task running longer than that runs twice. It is set far above the longest
# task (``task_time_limit``) plus the longest retry countdown, and in every place Celery reads it
# (a value set in only one place is ignored by the others: docs/celery-notes.md).
VISIBILITY_MARGIN = 3.0


def configure(app: Celery, settings: Settings) -> Celery:
    broker = settings.broker_url or settings.redis_url or "redis://127.0.0.1:6379/0"
    backend = settings.result_url or settings.redis_url or broker
    visibility = int(VISIBILITY_MARGIN * (settings.task_time_limit + settings.retry_backoff_max) + 60)
    # Bounded socket waits: a broker that stops answering makes a publish fail (the dispatcher retries
    # it) instead of hanging the follower that publishes.
    transport: dict[str, Any] = {
        "visibility_timeout": visibility,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
    }
    if settings.redis_sentinel_master:  # sentinel:// URLs: kombu and the result backend ask for the master
        transport["master_name"] = settings.redis_sentinel_master
    # One queue per farm: a farm's workers never take another farm's batches (docs/deploy.md).
    queue = f"couchfarm.{settings.farm}" if settings.farm else "celery"
    app.conf.update(
        broker_url=broker,
        result_backend=backend,
        # TLS for rediss:// only: kombu turns TLS on for any URL once broker_use_ssl is set.
        broker_use_ssl=_redis_tls(settings, broker) or False,
        redis_backend_use_ssl=_redis_tls(settings, backend),
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        task_default_queue=queue,
        task_default_exchange=queue,
        task_default_routing_key=queue,
        visibility_timeout=visibility,
        # A task is acknowledged after it ran, and re-queued when its process dies (SIGKILL, OOM):
        # acks_late alone would acknowledge it on WorkerLostError. Such a redelivery does not count
        # as a Celery retry, so the batch's record counts deliveries and strikes (couchfarm/batch.py).
        # Nothing waits for the visibility timeout: a message Celery acknowledged on a hard time
        # limit, or one left unacknowledged by a dead worker, is re-sent by the lease holder once
        # the batch's heartbeat stops (couchfarm/dispatch/recovery.py).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        # One message at a time per process: a prefetched message waits unacknowledged and could
        # outlive the visibility timeout; it would also starve other workers of batches.
        worker_prefetch_multiplier=1,
        # Hard limit below the visibility timeout; the soft limit leaves time to dead-letter.
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=max(1.0, settings.task_time_limit - 10),
        # Soft shutdown (Celery 5.5+): on SIGTERM, running tasks get this long to finish, then
        # their messages go back to the queue at once instead of after the visibility timeout.
        worker_soft_shutdown_timeout=min(30.0, settings.task_time_limit),
        worker_enable_soft_shutdown_on_idle=True,
        # Task events for Flower (sent, started, succeeded, our task-dead_lettered). No STARTED
        # state in the result backend: nothing reads it, and every key there costs memory.
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    tasks_context.configure(settings)
    return app


def _redis_tls(settings: Settings, url: str) -> dict[str, Any] | None:
    """Celery's ``ssl_*`` options for a ``rediss://`` URL, from the same files as the state client."""
    if not url.lower().startswith("rediss://"):
        return None
    return settings.redis_tls.prepare(url).redis_options(celery=True)


def create_app(settings: Settings | None = None) -> Celery:
    app = Celery("couchfarm", include=["tasks.resolve", "tasks.deadletter"])
    return configure(app, settings or Settings.load(os.environ.get("COUCHFARM_CONFIG")))


@after_setup_logger.connect
@after_setup_task_logger.connect
def _redacting_handlers(logger: object, **kwargs: object) -> None:
    """Celery's own handlers get the redacting filter and our format too."""
    import logging

    assert isinstance(logger, logging.Logger)
    settings = tasks_context.current_settings()
    fmt = settings.log_format if settings else "console"
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    logger.addHandler(make_handler(fmt))


@worker_process_shutdown.connect
def _metrics_process_dead(pid: int | None = None, **kwargs: object) -> None:
    """A pool process that exits leaves its live gauges behind unless it is marked dead."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]


app = create_app()
