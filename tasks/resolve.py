"""``couchfarm.resolve_batch``: one delivery of a batch of documents of one database.

Thin: it decodes its arguments, hands the delivery to :class:`couchfarm.batch.BatchLife` (which
owns the batch's life: start, heartbeat, poison guard, retries, dead letters, completion) and, when
documents are to be retried, schedules the retry with ``self.retry``. Nothing is stored as a result
(``ignore_result``): the batch's record in Redis is what the dispatcher reads. The wire name is
fixed so that moving this file never renames the task.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import Reject

from couchfarm import metrics, trace
from couchfarm.batch import Job
from tasks.context import context

log = logging.getLogger("couchfarm.tasks")


@shared_task(bind=True, name="couchfarm.resolve_batch", max_retries=None, ignore_result=True)
def resolve_batch(
    self: Any,
    db: str,
    doc_ids: list[str],
    correlation_id: str = "",
    batch_id: str = "",
    attempt: int = 0,
    farm: str = "",
) -> None:
    # counted before anything else: the farm's "workers not consuming" alert trusts this counter
    metrics.DELIVERIES.labels(metrics.FARM[0]).inc()
    ctx = context()
    if farm and farm != ctx.settings.farm:
        # another farm's batch: resolving it here would read and write the wrong CouchDB. Dropped
        # loudly; its own farm's dispatcher re-sends it to its own queue (a lost message).
        log.error(
            "batch %s of %s belongs to farm %s, not to this worker's farm %s: refused",
            batch_id,
            db,
            farm,
            ctx.settings.farm,
            extra={"db": db, "batch": batch_id, "task_farm": farm},
        )
        raise Reject(f"batch of farm {farm} sent to farm {ctx.settings.farm}", requeue=False)
    parent = incoming_traceparent(self.request)
    job = Job(db, tuple(doc_ids), batch_id, attempt, correlation_id, runner=self.request.id or "")
    ctx = context()
    with trace.activated(parent, "couchfarm.resolve_batch"), ctx.insights.batched():
        delivery = ctx.life.deliver(job)
    ctx.insights.results(delivery.results)
    if delivery.retry:
        raise self.retry(
            args=[db, delivery.retry, correlation_id],
            kwargs={"batch_id": batch_id, "attempt": delivery.attempt, "farm": str(ctx.settings.farm)},
            countdown=delivery.countdown,
            max_retries=None,
            headers={"traceparent": parent} if parent else None,
        )


def incoming_traceparent(request: Any) -> str | None:
    """The dispatcher's traceparent, sent as a message header."""
    value = getattr(request, "traceparent", None) or (getattr(request, "headers", None) or {}).get(
        "traceparent"
    )
    return str(value) if value else None
