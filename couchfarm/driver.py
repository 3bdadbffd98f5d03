"""Run the engine over documents with bounded retries, dead-lettering what still fails.

Used in-process by ``couchfarm resolve`` and ``dlq replay``; the Celery task does the same with
``self.retry`` instead of sleeping, sharing ``to_dead_letter``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from couchfarm import metrics, trace
from couchfarm.breaker import RetryPolicy
from couchfarm.deadletters import DeadLetter, DeadLetterSink
from couchfarm.models import Outcome
from couchfarm.resolution import DocResult, Engine

log = logging.getLogger("couchfarm.driver")


def to_dead_letter(
    result: DocResult, attempts: int, correlation_id: str = "", task_id: str = ""
) -> DeadLetter:
    return DeadLetter(
        db=result.db,
        doc_id=result.doc_id,
        revs=result.revs,
        strategy=result.strategy,
        error=result.error or "Error",
        reason=result.reason or "",
        attempts=attempts,
        correlation_id=correlation_id,
        task_id=task_id,
        traceparent=trace.current.get() or "",
    )


def give_up(result: DocResult, retries: int) -> DocResult:
    """A RETRY that ran out of retries becomes a dead letter."""
    result.outcome = Outcome.DEAD_LETTERED
    result.reason = f"still failing after {retries} retries: {result.reason}"
    return result


def settle(result: DocResult, attempt: int, max_retries: int, correlation_id: str) -> bool:
    """Log the document's outcome for this attempt; True when it is to be retried (a RETRY
    with retries left), else a RETRY out of retries becomes a dead letter first."""
    if result.outcome is Outcome.RETRY and attempt >= max_retries:
        give_up(result, max_retries)
    log_result(result, correlation_id, attempt)
    return result.outcome is Outcome.RETRY


def log_result(result: DocResult, correlation_id: str = "", attempt: int = 0) -> None:
    """One structured log line per document and attempt, and the matching metrics."""
    metrics.DOCUMENTS.labels(result.db, result.strategy or "-", result.outcome.value).inc()
    if result.outcome is not Outcome.NOOP:
        metrics.LATENCY.labels(result.db).observe(result.latency_ms / 1000)
        metrics.LEAVES.labels(result.db).observe(len(result.revs))
    level = logging.WARNING if result.outcome in (Outcome.DEAD_LETTERED, Outcome.RETRY) else logging.INFO
    log.log(
        level,
        "%s %s/%s",
        result.outcome.value,
        result.db,
        result.doc_id,
        extra={
            "db": result.db,
            "doc_id": result.doc_id,
            "revs": result.revs,
            "outcome": result.outcome.value,
            "strategy": result.strategy,
            "conflict_resolution_latency_ms": result.latency_ms,
            "correlation_id": correlation_id,
            "attempt": attempt,
            **({"reason": result.reason} if result.reason else {}),
        },
    )


@dataclass
class Summary:
    results: list[DocResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.outcome.value for r in self.results)

    @property
    def dead(self) -> list[DocResult]:
        return [r for r in self.results if r.outcome is Outcome.DEAD_LETTERED]


def resolve_docs(
    engine: Engine,
    db: str,
    doc_ids: Iterable[str],
    sink: DeadLetterSink,
    *,
    batch_size: int = 50,
    max_retries: int = 3,
    backoff: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    dry_run: bool = False,
    correlation_id: str = "",
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Resolve every document, batch by batch; retry RETRY outcomes up to ``max_retries`` times."""
    backoff = backoff or RetryPolicy(attempts=max_retries + 1, base=1.0, cap=30.0)
    summary, started = Summary(), time.monotonic()
    ids = list(dict.fromkeys(doc_ids))
    for i in range(0, len(ids), batch_size):
        batch = ids[i : i + batch_size]
        summary.results += resolve_batch(
            engine, db, batch, sink, max_retries, backoff, sleep, dry_run, correlation_id
        )
        if progress is not None:
            progress(len(batch))
    summary.seconds = time.monotonic() - started
    return summary


def resolve_batch(
    engine: Engine,
    db: str,
    batch: list[str],
    sink: DeadLetterSink,
    max_retries: int,
    backoff: RetryPolicy,
    sleep: Callable[[float], None],
    dry_run: bool,
    correlation_id: str,
) -> list[DocResult]:
    final: dict[str, DocResult] = {}
    pending, attempt = batch, 0
    while pending:
        retry = []
        for result in engine.resolve(db, pending, dry_run=dry_run):
            if settle(result, attempt, max_retries, correlation_id):
                retry.append(result.doc_id)
                continue
            if result.outcome is Outcome.DEAD_LETTERED:
                sink.add(to_dead_letter(result, attempt + 1, correlation_id))
            final[result.doc_id] = result
        if retry:
            sleep(backoff.delay(attempt))
            attempt += 1
        pending = retry
    return [final[d] for d in batch]
