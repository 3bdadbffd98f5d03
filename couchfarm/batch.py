"""A batch's life on the worker side, in one place: used by the Celery task and by ``couchfarm resolve``.

One call of :meth:`BatchLife.deliver` is one delivery of a batch:

1. ``start`` it in its record (couchfarm/ledger.py): a late copy (done, unknown, an earlier attempt)
   or a duplicate while another delivery is alive does nothing;
2. resolve its pending documents with the engine, under a heartbeat. After a delivery that died
   (SIGKILL, OOM, hard time limit) the next one is *careful*: small chunks, each document counted
   (a strike) before and cleared after, and the documents struck before one at a time, so a
   document whose resolution kills its process is dead-lettered as poison after
   ``max_deliveries`` instead of looping forever (``careful_chunks``);
3. settle every document: RESOLVED and NOOP are final; DEAD_LETTERED is stored (before the message
   is acknowledged) and shown in Flower once; RETRY (a 409, a transient failure, an unexpected
   error) is retried with full-jitter backoff at most ``max_retries`` times, then dead-lettered;
4. remember the leaves each settled document was left with (the follower skips the farm's own
   writes coming back through the feed);
5. end the delivery: ``retry_later`` (the caller schedules the retry after ``countdown``) or
   ``complete``.

A soft time limit (``interrupts``) in the middle retries the unsettled documents at once, carefully:
it counts as a delivery for the poison guard, never as a reason to dead-letter a healthy document.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

from couchfarm import failpoints, metrics, trace
from couchfarm.breaker import RetryPolicy
from couchfarm.deadletters import DeadLetter, DeadLetterSink
from couchfarm.failures import Failure
from couchfarm.ledger import Ledger, Start
from couchfarm.models import Outcome
from couchfarm.resolution import DocResult, Engine

log = logging.getLogger("couchfarm.batch")


@dataclass(frozen=True)
class Job:
    """One message: a delivery of (part of) a batch."""

    db: str
    doc_ids: tuple[str, ...]
    batch_id: str = ""
    attempt: int = 0  #: retries so far
    correlation_id: str = ""
    runner: str = ""  #: the delivery's identity (the Celery task id)


@dataclass(frozen=True)
class Policy:
    max_retries: int = 3  #: retries of a document after its first attempt
    max_deliveries: int = 3  #: deaths while resolving one document before it is poison
    backoff: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=4, base=1.0, cap=60.0))
    beat_interval: float = 10.0  #: seconds between heartbeats of a running delivery
    beat_timeout: float = 30.0  #: a runner silent for longer is dead (another copy may take over)
    dry_run: bool = False


@dataclass
class Delivery:
    """What one delivery did: settled results, and the documents to run again after ``countdown``."""

    results: list[DocResult] = field(default_factory=list)
    retry: list[str] = field(default_factory=list)
    attempt: int = 0  #: the attempt number of the retry
    countdown: float = 0.0
    skipped: str = ""  #: why this copy did nothing (gone, stale, busy, taken over)


class Record(Protocol):
    """Where a batch's life is recorded (Redis for the farm; nothing for an in-process run)."""

    def start(self, job: Job) -> Start: ...
    def beat(self, job: Job) -> bool: ...
    def strikes(self, job: Job, docs: list[str]) -> dict[str, int]: ...
    def strike(self, job: Job, docs: list[str]) -> dict[str, int]: ...
    def spare(self, job: Job, docs: list[str]) -> None: ...
    def retry_later(self, job: Job, docs: list[str], attempt: int, delay: float, careful: bool) -> bool: ...
    def complete(self, job: Job) -> bool: ...
    def remember(self, db: str, leaves: dict[str, list[str]]) -> None: ...


class LedgerRecord:
    """The farm's record: the batch's hash in Redis (couchfarm/ledger.py)."""

    def __init__(self, ledger: Ledger, beat_timeout: float) -> None:
        self.ledger = ledger
        self.beat_timeout = beat_timeout

    def start(self, job: Job) -> Start:
        return self.ledger.start(job.db, job.batch_id, job.runner, job.attempt, self.beat_timeout)

    def beat(self, job: Job) -> bool:
        return self.ledger.beat(job.db, job.batch_id, job.runner)

    def strikes(self, job: Job, docs: list[str]) -> dict[str, int]:
        return self.ledger.strikes(job.db, job.batch_id, docs)

    def strike(self, job: Job, docs: list[str]) -> dict[str, int]:
        return self.ledger.strike(job.db, job.batch_id, docs)

    def spare(self, job: Job, docs: list[str]) -> None:
        self.ledger.spare(job.db, job.batch_id, docs)

    def retry_later(self, job: Job, docs: list[str], attempt: int, delay: float, careful: bool) -> bool:
        return self.ledger.retry_later(job.db, job.batch_id, job.runner, docs, attempt, delay, careful)

    def complete(self, job: Job) -> bool:
        return self.ledger.complete(job.db, job.batch_id, job.runner)

    def remember(self, db: str, leaves: dict[str, list[str]]) -> None:
        self.ledger.remember_leaves(db, leaves)


class LocalRecord:
    """An in-process run (``couchfarm resolve``, ``dlq replay``): this process is the only runner,
    and when it dies there is nothing to redeliver, so every delivery runs and none is careful."""

    def start(self, job: Job) -> Start:
        return Start("run", list(job.doc_ids), job.attempt, False)

    def beat(self, job: Job) -> bool:
        return True

    def strikes(self, job: Job, docs: list[str]) -> dict[str, int]:
        return {}

    def strike(self, job: Job, docs: list[str]) -> dict[str, int]:
        return dict.fromkeys(docs, 1)

    def spare(self, job: Job, docs: list[str]) -> None:
        return None

    def retry_later(self, job: Job, docs: list[str], attempt: int, delay: float, careful: bool) -> bool:
        return True

    def complete(self, job: Job) -> bool:
        return True

    def remember(self, db: str, leaves: dict[str, list[str]]) -> None:
        return None


class BatchLife:
    """Runs deliveries of batches: the one owner of retries, poison, dead letters and own writes."""

    def __init__(
        self,
        engine: Engine,
        record: Record,
        sink: DeadLetterSink,
        policy: Policy,
        *,
        on_dead_letter: Callable[[DeadLetter], None] | None = None,
        interrupts: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.engine = engine
        self.record = record
        self.sink = sink
        self.policy = policy
        self.on_dead_letter = on_dead_letter or (lambda entry: None)
        self.interrupts = interrupts

    def deliver(self, job: Job) -> Delivery:
        record = self.record if job.batch_id else LocalRecord()  # a task sent by hand has no record
        start = record.start(job)
        if start.verdict != "run":
            log.info("batch %s of %s: this copy does nothing (%s)", job.batch_id, job.db, start.verdict)
            return Delivery(skipped=start.verdict)
        job = replace(job, doc_ids=tuple(start.pending), attempt=start.attempt)
        with Heartbeat(record, job, self.policy.beat_interval, enabled=bool(job.batch_id)):
            raw, unsettled, interrupted = self._resolve(record, job, start.careful, start.revs)
        delivery = self._settle(record, job, raw)
        failpoints.hit("after_dead_letter")  # stored, not yet completed nor acknowledged: the worst moment
        if interrupted:  # a soft time limit: the rest again at once, carefully, without a retry
            delivery.retry += unsettled
        return self._end(record, job, delivery, same_attempt=interrupted)

    # -- resolving ------------------------------------------------------------------------------

    def _resolve(
        self, record: Record, job: Job, careful: bool, revs: dict[str, list[str]]
    ) -> tuple[list[DocResult], list[str], bool]:
        """(results, documents left unresolved by an interrupt, whether one happened)."""
        done: list[DocResult] = []
        docs = list(job.doc_ids)
        try:
            if not careful:
                return self._engine(job, docs, revs), [], False
            for chunk in careful_chunks(docs, record.strikes(job, docs)):
                counts = record.strike(job, chunk)
                for doc_id in [d for d in chunk if counts.get(d, 0) >= self.policy.max_deliveries]:
                    done.append(poison(job.db, doc_id, counts[doc_id]))
                run = [d for d in chunk if counts.get(d, 0) < self.policy.max_deliveries]
                try:
                    done += self._engine(job, run, revs) if run else []
                except self.interrupts:  # the strikes stay: it counts as a delivery
                    settled = {r.doc_id for r in done}
                    return done, [d for d in docs if d not in settled], True
                record.spare(job, run)
            return done, [], False
        except self.interrupts:
            settled = {r.doc_id for r in done}
            return done, [d for d in docs if d not in settled], True

    def _engine(self, job: Job, docs: list[str], revs: dict[str, list[str]]) -> list[DocResult]:
        """The engine's results; an error it did not turn into an outcome (a bug, a 401 on a read)
        makes every document a RETRY with the reason, so it is retried and then dead-lettered.
        ``revs``: the leaves the feed showed (a cheaper read where the server allows it)."""
        known = {d: revs[d] for d in docs if d in revs} if job.attempt == 0 else None
        try:
            return self.engine.resolve(job.db, docs, dry_run=self.policy.dry_run, known=known)
        except self.interrupts:
            raise
        except Exception as exc:
            log.exception("batch %s of %s failed: %s", job.batch_id, job.db, exc, extra={"db": job.db})
            reason, error = f"{type(exc).__name__}: {exc}", Failure.of(exc)
            return [DocResult(job.db, d, Outcome.RETRY, reason=reason, error=error) for d in docs]

    # -- settling -------------------------------------------------------------------------------

    def _settle(self, record: Record, job: Job, results: list[DocResult]) -> Delivery:
        delivery = Delivery()
        for result in results:
            if settle(result, job.attempt, self.policy.max_retries, job.correlation_id):
                delivery.retry.append(result.doc_id)
                continue
            if result.outcome is Outcome.DEAD_LETTERED:
                entry = to_dead_letter(result, job.attempt + 1, job.correlation_id, job.runner)
                entry.delivery = f"{job.batch_id}/{job.attempt}" if job.batch_id else ""
                if self.sink.add(entry):  # False for a redelivery that already wrote it
                    metrics.DEAD_LETTERED.labels(metrics.FARM[0], entry.db, entry.error).inc()
                    self._show(entry)
            delivery.results.append(result)
        record.remember(job.db, {r.doc_id: r.leaves_after for r in results if r.leaves_after})
        return delivery

    def _show(self, entry: DeadLetter) -> None:
        try:
            self.on_dead_letter(entry)
        except Exception as exc:  # the store holds it; Flower is only a view of it
            log.warning("dead letter %s stored, but not shown in Flower: %s", entry.id, exc)

    def _end(self, record: Record, job: Job, delivery: Delivery, same_attempt: bool) -> Delivery:
        if delivery.retry:
            delivery.attempt = job.attempt if same_attempt else job.attempt + 1
            delivery.countdown = 0.0 if same_attempt else self.policy.backoff.delay(job.attempt)
            if not record.retry_later(
                job, delivery.retry, delivery.attempt, delivery.countdown, careful=same_attempt
            ):
                return self._taken_over(job, delivery)
            return delivery
        if not record.complete(job):
            return self._taken_over(job, delivery)
        return delivery

    @staticmethod
    def _taken_over(job: Job, delivery: Delivery) -> Delivery:
        log.warning(
            "batch %s of %s was taken over by another delivery (this one was silent too long)",
            job.batch_id,
            job.db,
            extra={"db": job.db},
        )
        return Delivery(results=delivery.results, skipped="taken over")

    # -- in-process -----------------------------------------------------------------------------

    def run(
        self,
        db: str,
        doc_ids: Iterable[str],
        *,
        batch_size: int = 50,
        sleep: Callable[[float], None] = time.sleep,
        correlation_id: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> Summary:
        """Every document, batch by batch, each batch retried until settled (``couchfarm resolve``)."""
        summary, started = Summary(), time.monotonic()
        ids = list(dict.fromkeys(doc_ids))
        for i in range(0, len(ids), batch_size):
            chunk = ids[i : i + batch_size]
            final: dict[str, DocResult] = {}
            job = Job(db, tuple(chunk), correlation_id=correlation_id)
            while True:
                delivery = self.deliver(job)
                final.update((r.doc_id, r) for r in delivery.results)
                if not delivery.retry:
                    break
                sleep(delivery.countdown)
                job = replace(job, doc_ids=tuple(delivery.retry), attempt=delivery.attempt)
            summary.results += [final[d] for d in chunk if d in final]
            if progress is not None:
                progress(len(chunk))
        summary.seconds = time.monotonic() - started
        return summary


class Heartbeat:
    """Renews the batch's ``beat_at`` every ``interval`` seconds while the delivery runs."""

    def __init__(self, record: Record, job: Job, interval: float, enabled: bool = True) -> None:
        self.record, self.job, self.interval, self.enabled = record, job, interval, enabled
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        if self.enabled:
            self._thread = threading.Thread(target=self._beat, name=f"beat:{self.job.batch_id}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if not self.record.beat(self.job):
                    return  # another delivery took the batch over; ours will not complete it
            except Exception as exc:  # a Redis blip: the next beat may pass
                log.warning("heartbeat of batch %s failed: %s", self.job.batch_id, exc)


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


CAREFUL_CHUNK = 10  #: documents resolved together after a death, unless already suspected


def careful_chunks(docs: list[str], strikes: dict[str, int]) -> list[list[str]]:
    """The documents of a delivery after one died: those already struck (they were being resolved
    when a delivery died) one at a time first, the others in small chunks. A death in a chunk strikes
    its documents, which the next delivery then runs one at a time: the poison one is found, and no
    innocent one reaches ``max_deliveries`` for having shared a chunk with it."""
    suspects = [d for d in docs if strikes.get(d, 0) > 0]
    others = [d for d in docs if strikes.get(d, 0) == 0]
    return [[d] for d in suspects] + [
        others[i : i + CAREFUL_CHUNK] for i in range(0, len(others), CAREFUL_CHUNK)
    ]


def poison(db: str, doc_id: str, strikes: int) -> DocResult:
    reason = f"its delivery died {strikes} times while resolving it (poison document)"
    return DocResult(db, doc_id, Outcome.DEAD_LETTERED, reason=reason, error=Failure.POISON_DOCUMENT)


def to_dead_letter(
    result: DocResult, attempts: int, correlation_id: str = "", task_id: str = ""
) -> DeadLetter:
    return DeadLetter(
        db=result.db,
        doc_id=result.doc_id,
        revs=result.revs,
        strategy=result.strategy,
        error=result.error or Failure.UNEXPECTED,
        reason=result.reason or "",
        attempts=attempts,
        correlation_id=correlation_id,
        task_id=task_id,
        traceparent=trace.current.get() or "",
    )


def settle(result: DocResult, attempt: int, max_retries: int, correlation_id: str) -> bool:
    """Log the document's outcome for this attempt; True when it is to be retried (a RETRY with
    retries left); a RETRY out of retries becomes a dead letter first."""
    if result.outcome is Outcome.RETRY and attempt >= max_retries:
        result.outcome = Outcome.DEAD_LETTERED
        result.reason = f"still failing after {max_retries} retries: {result.reason}"
    log_result(result, correlation_id, attempt)
    return result.outcome is Outcome.RETRY


def log_result(result: DocResult, correlation_id: str = "", attempt: int = 0) -> None:
    """One structured log line per document and attempt, and the matching metrics."""
    metrics.DOCUMENTS.labels(metrics.FARM[0], result.db, result.strategy or "-", result.outcome.value).inc()
    if result.outcome is not Outcome.NOOP:
        metrics.LATENCY.labels(metrics.FARM[0], result.db).observe(result.latency_ms / 1000)
        metrics.LEAVES.labels(metrics.FARM[0], result.db).observe(len(result.revs))
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
