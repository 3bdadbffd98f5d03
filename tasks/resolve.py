"""``couchfarm.resolve_batch``: resolve a batch of documents of one database.

Thin and idempotent: it takes ids, re-reads every leaf, and returns the outcomes. Documents that hit
a 409 or a transient failure are retried (only those) with exponential backoff and full jitter, at
most ``max_retries`` times; then they are dead-lettered with their last reason. The wire name is
fixed so that moving this file never renames the task.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from couchfarm.driver import give_up, log_result, to_dead_letter
from couchfarm.factory import retry_policy
from couchfarm.models import Outcome
from tasks.context import context


@shared_task(bind=True, name="couchfarm.resolve_batch", max_retries=None)
def resolve_batch(
    self: Any, db: str, doc_ids: list[str], correlation_id: str = "", attempt: int = 0
) -> dict[str, Any]:
    ctx = context(self.app)
    settings = ctx.settings
    retry: list[str] = []
    outcomes: dict[str, str] = {}
    for result in ctx.engine.resolve(db, list(doc_ids)):
        log_result(result, correlation_id, attempt)
        if result.outcome is Outcome.RETRY and attempt < settings.max_retries:
            retry.append(result.doc_id)
            continue
        if result.outcome is Outcome.RETRY:
            give_up(result, settings.max_retries)
        if result.outcome is Outcome.DEAD_LETTERED:
            ctx.dead_letters.add(to_dead_letter(result, attempt + 1, correlation_id, self.request.id or ""))
        outcomes[result.doc_id] = result.outcome.value
    if retry:
        countdown = retry_policy(settings).delay(attempt)
        raise self.retry(
            args=[db, retry, correlation_id],
            kwargs={"attempt": attempt + 1},
            countdown=countdown,
            max_retries=None,
        )
    return {"db": db, "outcomes": outcomes, "correlation_id": correlation_id}
