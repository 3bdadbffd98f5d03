"""``couchfarm.resolve_batch``: resolve a batch of documents of one database.

Thin and idempotent: it takes ids, re-reads every leaf, and returns the outcomes. Documents that hit
a 409 or a transient failure are retried (only those) with exponential backoff and full jitter, at
most ``max_retries`` times; then they are dead-lettered with their last reason. Dead letters are
written before the task returns, so before its message is acknowledged (``acks_late``). When every
document is settled the batch is completed in Redis, which lets the dispatcher move ``done``.

A batch whose worker process dies is delivered again by Celery without counting a retry. The task
counts deliveries itself: from the second delivery on it works one document at a time, counting
each document's attempts, and dead-letters a document that has killed its worker
``max_deliveries`` times, so a poison document cannot loop forever nor hold back its batch.
The wire name is fixed so that moving this file never renames the task.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore, Reject, Retry

from couchfarm import failpoints, trace
from couchfarm.deadletters import DeadLetter
from couchfarm.driver import settle, to_dead_letter
from couchfarm.factory import retry_policy
from couchfarm.models import Outcome
from couchfarm.resolution import DocResult
from couchfarm.state import FarmState
from tasks.context import WorkerContext, context

POISON = "PoisonDocument"
log = logging.getLogger("couchfarm.tasks")


@shared_task(bind=True, name="couchfarm.resolve_batch", max_retries=None)
def resolve_batch(
    self: Any, db: str, doc_ids: list[str], correlation_id: str = "", batch_id: str = "", attempt: int = 0
) -> dict[str, Any]:
    parent = incoming_traceparent(self.request)
    with trace.activated(parent, "couchfarm.resolve_batch"):
        try:
            return _resolve_batch(self, db, doc_ids, correlation_id, batch_id, attempt, parent)
        except (Retry, Ignore, Reject):
            raise
        except Exception as exc:  # anything the engine did not turn into an outcome
            return _unexpected(self, exc, db, list(doc_ids), correlation_id, batch_id, attempt, parent)


def _unexpected(
    self: Any,
    exc: Exception,
    db: str,
    doc_ids: list[str],
    correlation_id: str,
    batch_id: str,
    attempt: int,
    parent: str | None,
) -> dict[str, Any]:
    """An unexpected error (a Redis blip, a time limit, a bug) must not leave the batch open until
    its stale re-send: the whole batch is retried like a 409, then dead-lettered with the reason."""
    ctx = context()
    log.exception(
        "batch %s of %s failed: %s", batch_id, db, exc, extra={"db": db, "correlation_id": correlation_id}
    )
    if attempt < ctx.settings.max_retries:
        raise _retry(self, db, doc_ids, correlation_id, batch_id, attempt, parent)
    reason = f"still failing after {ctx.settings.max_retries} retries: {type(exc).__name__}: {exc}"
    for doc_id in doc_ids:
        result = DocResult(db, doc_id, Outcome.DEAD_LETTERED, reason=reason, error=type(exc).__name__)
        settle(result, attempt, ctx.settings.max_retries, correlation_id)
        dead_letter(ctx, result, attempt, correlation_id, self.request.id or "")
    if ctx.redis is not None and batch_id:
        FarmState(ctx.redis).complete(db, batch_id)
    return {"db": db, "batch_id": batch_id, "outcomes": dict.fromkeys(doc_ids, Outcome.DEAD_LETTERED.value)}


def incoming_traceparent(request: Any) -> str | None:
    """The dispatcher's traceparent, sent as a message header."""
    value = getattr(request, "traceparent", None) or (getattr(request, "headers", None) or {}).get(
        "traceparent"
    )
    return str(value) if value else None


def _resolve_batch(
    self: Any,
    db: str,
    doc_ids: list[str],
    correlation_id: str,
    batch_id: str,
    attempt: int,
    parent: str | None,
) -> dict[str, Any]:
    ctx = context()
    state = FarmState(ctx.redis) if ctx.redis is not None and batch_id else None
    task_id = self.request.id or ""
    if state is not None and ((batch := state.batch(db, batch_id)) is None or batch.status == "done"):
        # a late copy (a stale re-send's original, or a batch Redis no longer knows): running it
        # could race the newer batch that now holds these documents
        log.info("batch %s of %s is complete or unknown: skipped", batch_id, db, extra={"db": db})
        return {"db": db, "batch_id": batch_id, "outcomes": {}, "skipped": True}
    results = run_once(ctx, state, db, list(doc_ids), batch_id, attempt, correlation_id, task_id)
    retry: list[str] = []
    outcomes: dict[str, str] = {}
    for result in results:
        if settle(result, attempt, ctx.settings.max_retries, correlation_id):
            retry.append(result.doc_id)
            continue
        if result.outcome is Outcome.DEAD_LETTERED:
            dead_letter(ctx, result, attempt, correlation_id, task_id)
        outcomes[result.doc_id] = result.outcome.value
    if state is not None:
        state.remember_leaves(db, {r.doc_id: r.leaves_after for r in results if r.leaves_after})
    failpoints.hit("after_dead_letter")
    if retry:
        raise _retry(self, db, retry, correlation_id, batch_id, attempt, parent)
    if state is not None:
        state.complete(db, batch_id)
    return {"db": db, "batch_id": batch_id, "outcomes": outcomes, "correlation_id": correlation_id}


def _retry(
    self: Any,
    db: str,
    doc_ids: list[str],
    correlation_id: str,
    batch_id: str,
    attempt: int,
    parent: str | None,
) -> Exception:
    """The same task again for ``doc_ids``, after a full-jitter backoff, keeping the trace."""
    exc: Exception = self.retry(
        args=[db, doc_ids, correlation_id],
        kwargs={"batch_id": batch_id, "attempt": attempt + 1},
        countdown=retry_policy(context().settings).delay(attempt),
        max_retries=None,
        headers={"traceparent": parent} if parent else None,
    )
    return exc


def dead_letter(
    ctx: WorkerContext, result: DocResult, attempt: int, correlation_id: str, task_id: str
) -> None:
    """Store the dead letter (before the task is acknowledged), then show it in Flower once."""
    entry = to_dead_letter(result, attempt + 1, correlation_id, task_id)
    if ctx.dead_letters.add(entry):  # False for a redelivery that already wrote it
        show_in_flower(entry)


def show_in_flower(entry: DeadLetter) -> None:
    from tasks.deadletter import dead_letter

    dead_letter.apply_async(
        args=[entry.db, entry.doc_id, entry.error, entry.reason, entry.id, entry.correlation_id]
    )


def run_once(
    ctx: WorkerContext,
    state: FarmState | None,
    db: str,
    doc_ids: list[str],
    batch_id: str,
    attempt: int,
    correlation_id: str,
    task_id: str,
) -> list[DocResult]:
    """Resolve the batch; after a worker died on it, one document at a time with a poison guard."""
    if state is None:
        return ctx.engine.resolve(db, doc_ids)
    state.touch(db, batch_id)
    if state.delivery(batch_id, attempt) == 1:
        return ctx.engine.resolve(db, doc_ids)
    results = []
    for doc_id in doc_ids:
        tries = state.delivery(f"{batch_id}/{doc_id}", attempt)
        if tries >= ctx.settings.max_deliveries:
            reason = f"its worker process died {tries} times while resolving it (poison document)"
            results.append(DocResult(db, doc_id, Outcome.DEAD_LETTERED, reason=reason, error=POISON))
            continue
        results += ctx.engine.resolve(db, [doc_id])
        state.clear_delivery(f"{batch_id}/{doc_id}", attempt)  # it came back: count only deaths
    return results
