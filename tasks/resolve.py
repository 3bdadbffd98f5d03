"""``couchfarm.resolve_batch``: one delivery of a batch of documents of one database.

Thin: it decodes its arguments, hands the delivery to :class:`couchfarm.batch.BatchLife` (which
owns the batch's life: start, heartbeat, poison guard, retries, dead letters, completion) and, when
documents are to be retried, schedules the retry with ``self.retry``. Nothing is stored as a result
(``ignore_result``): the batch's record in Redis is what the dispatcher reads. The wire name is
fixed so that moving this file never renames the task.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from couchfarm import trace
from couchfarm.batch import Job
from tasks.context import context


@shared_task(bind=True, name="couchfarm.resolve_batch", max_retries=None, ignore_result=True)
def resolve_batch(
    self: Any, db: str, doc_ids: list[str], correlation_id: str = "", batch_id: str = "", attempt: int = 0
) -> None:
    parent = incoming_traceparent(self.request)
    job = Job(db, tuple(doc_ids), batch_id, attempt, correlation_id, runner=self.request.id or "")
    ctx = context()
    with trace.activated(parent, "couchfarm.resolve_batch"):
        delivery = ctx.life.deliver(job)
    ctx.insights.results(delivery.results)
    if delivery.retry:
        raise self.retry(
            args=[db, delivery.retry, correlation_id],
            kwargs={"batch_id": batch_id, "attempt": delivery.attempt},
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
