"""One database's ``_changes`` follower, run while this dispatcher holds the database's lease.

It has no thread of its own: the dispatcher's feed readers run its rounds (couchfarm/dispatch/
scheduler.py) when the change signal says the database changed (couchfarm/dispatch/signal.py),
back to back while it has more to read, every ``PUMP_EVERY`` while it has open batches.

Steps of one round (each write fenced by the lease; the ledger's states in couchfarm/ledger.py):
1. snapshot: checkpoint, pause switch, open batches, in one Redis round trip;
2. pump: claim waiting batches whose documents are not in flight, publish claimed batches that were
   never published (a dispatcher died between claim and publish, or the broker refused), re-send a
   batch whose delivery went silent or whose message was lost (couchfarm/dispatch/recovery.py), move
   ``done`` over completed batches;
3. back-pressure: while more than ``max_queued_batches`` batches are open, do not read;
4. read one page from ``read`` (a normal feed read with a client-side deadline), keep the rows with
   more than one leaf (``style=all_docs``);
5. when the buffer is full, old, or the feed is caught up: record the batches (each claimed and
   published at once when it can be), then advance ``read`` (checkpoint only after hand-off: a
   crash costs a replay, never a loss);
6. mirror ``done`` into ``_local/couchfarm-checkpoint`` when due (``Follower.mirror``).
A round that fails (CouchDB, Redis) is logged and tried again with backoff; a publish that fails
leaves its batch claimed-but-unpublished for the next try. Only a lost lease ends the follower.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from couchfarm import failpoints, trace
from couchfarm.breaker import RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.dispatch.recovery import overdue
from couchfarm.errors import CouchError, Forbidden, LeaseLost, NotFound, Unauthorized
from couchfarm.feeds import ChangeRow, ChangesPage, Seq
from couchfarm.ledger import Batch, Ledger, Snapshot, Timing
from couchfarm.settings import Settings
from couchfarm.state import FarmState, Lease, paused

log = logging.getLogger("couchfarm.dispatcher")
MIRROR = "couchfarm-checkpoint"  #: name of the ``_local`` document that mirrors ``done``
DELETED = "the database was deleted"  #: a follower's problem when its feed answers 404
PUMP_EVERY = 0.25  #: the shortest time between rounds while batches are open (claims, re-sends, done)
PAUSED_EVERY = 1.0  #: seconds between rounds of a paused database (its open batches still finish)
MIRROR_EVERY = 10.0  #: seconds between two mirrors of ``done`` at least (a mirror behind means a replay)
MIRROR_ROWS = 1000  #: feed rows read since the last mirror before ``done`` is mirrored again


class Broker(Protocol):
    """The hand-off to the workers (Celery in workers/farm.py)."""

    def send(self, batch: Batch) -> None:
        """Publish one delivery of ``batch`` (its pending documents, its attempt); raise on failure."""

    def queued(self) -> set[str] | None:
        """The ids of the batches whose message waits in the farm's queue; None when it cannot be told."""


class Follower:
    def __init__(
        self,
        client: CouchClient,
        state: FarmState,
        ledger: Ledger,
        lease: Lease,
        settings: Settings,
        broker: Broker,
        *,
        until_idle: bool = False,
        on_event: Callable[..., None] | None = None,
        on_caught_up: Callable[[str, Seq], None] | None = None,
    ) -> None:
        self.client, self.state, self.ledger, self.lease = client, state, ledger, lease
        self.settings, self.broker = settings, broker
        self.db = lease.db
        self.timing = Timing.from_settings(settings)
        self.until_idle = until_idle
        self.on_event = on_event or (lambda name, **kw: None)
        #: told the feed's ``last_seq`` whenever a read reached the end (the change signal's baseline)
        self.on_caught_up = on_caught_up or (lambda db, seq: None)
        self.idle = False  #: caught up, nothing buffered, nothing open
        self.problem: str | None = None  #: why this database cannot be followed any more
        self.lost = False
        self.buffer: dict[str, list[str]] = {}  #: document -> its leaf revs as the feed showed them
        self.buffer_since = 0.0
        self.position: Seq = None
        self.positioned = False  #: the position is taken from the checkpoints (continue_from_checkpoint)
        self.must_read = True  #: the first round reads; so does every round after a full page
        self._mirrored: Seq = object()
        self._mirror_at = 0.0
        self._rows_unmirrored = 0  #: feed rows read since the mirror was last written
        self._mirror_behind = False  #: the last mirror was written while done was behind read
        self._mirror_rev: str | None = None  #: the mirror's rev as this follower last read or wrote it
        # failed rounds and refused publishes are tried again soon enough to recover within the
        # bound of a stall (2 x lease_ttl) once the cause is gone
        self._backoff = RetryPolicy(attempts=1, base=0.25, cap=max(1.0, settings.lease_ttl / 2))
        self._failures = 0  #: consecutive failed rounds
        self._publish_failures = 0
        self._publish_blocked_until = 0.0
        self._lag: int | None = None  #: the lag of the last round that read the feed

    # -- one round, run by a feed reader (couchfarm/dispatch/scheduler.py) ------------------------

    def round(self) -> float | None:
        """One round; when the next is due: 0 (more to read), a delay, or None (until woken)."""
        if self.lost:
            return None
        try:
            # a change from now on marks it again; taken first, so a round that fails below is not
            # woken again by the same mark (it backs off, and its next round reads: must_read)
            marked = self.state.take_dirty(self.db)
            if not self.positioned:
                self.continue_from_checkpoint()
            after = self.step(read=marked or self.must_read)
            self._failures = 0
            return after
        except LeaseLost:
            self.lost = True
            self.on_event("lease_lost", db=self.db)
            log.warning("lease of %s lost: stepping down", self.db, extra={"db": self.db})
            return None
        except (NotFound, Unauthorized, Forbidden) as exc:  # no retry mends these
            self.problem = DELETED if isinstance(exc, NotFound) else f"access refused: {exc}"
            return None
        except Exception as exc:  # CouchDB, Redis or a bug: never die holding a claim
            self._failures += 1
            self.must_read = True  # the mark this round took may not have been read
            if self.until_idle and self._failures > self.settings.couch_retries:
                self.problem = f"its rounds keep failing: {type(exc).__name__}: {exc}"
                return None
            wait = self._backoff.delay(min(self._failures, 6))
            what = "feed" if isinstance(exc, CouchError) else "round"
            log.warning(
                "%s of %s failed (retry in %.1fs): %s", what, self.db, wait, exc, extra={"db": self.db}
            )
            return wait

    def continue_from_checkpoint(self) -> None:
        """Continue from ``read``; with no Redis checkpoint, from the ``_local`` mirror of ``done``
        unless the mirror predates a ``checkpoint reset`` (its token is not newer than the reset).

        The mirror also keeps the fencing token: a lease whose token is not above the mirrored one
        (Redis lost writes) is raised past it, and the new token is recorded before anything else
        is written, so a token number is never handed out twice.
        """
        mirror = self.client.get_local(self.db, MIRROR) or {}
        mirrored = int(mirror.get("token", 0))
        if self.lease.token <= mirrored:  # Redis lost writes: never hand a token number out twice
            old = self.lease.token
            self.lease = self.state.raise_token(self.lease, mirrored + 1)
            log.warning(
                "fencing token of %s raised from %d to %d, past the %d its mirror recorded",
                self.db,
                old,
                self.lease.token,
                mirrored,
                extra={"db": self.db},
            )
        cp = self.state.checkpoint(self.db)
        usable = "done" in mirror and mirrored > cp.reset_token
        # the token's record carries the freshest done known: Redis's, else the mirror's own
        done = cp.done if cp.known and cp.done is not None else mirror["done"] if usable else None
        body = {"token": self.lease.token, "at": time.time(), **({"done": done} if done is not None else {})}
        self._mirror_rev = self.client.put_local(self.db, MIRROR, body, rev=str(mirror.get("_rev", "")))
        if done is not None:
            self._mirrored, self._mirror_at = done, time.monotonic()
            self._mirror_behind = cp.known and cp.read != done  # from the mirror: read starts there
        if cp.known:
            self.position = cp.read
        elif usable:
            self.position = mirror["done"]
            self.state.write_checkpoint(self.lease, "read", self.position)
            self.state.write_checkpoint(self.lease, "done", self.position)
            log.info(
                "no checkpoint in Redis for %s: resuming from its _local mirror",
                self.db,
                extra={"db": self.db, "since": self.position},
            )
        self.positioned = True

    # -- one round ------------------------------------------------------------------------------

    def step(self, read: bool = True) -> float | None:
        """Pump, then read one page, then mirror ``done`` when due (after the read: what this round
        moved ``done`` to); when the next round is due (see ``round``). A round while batches are
        open only pumps, unless the database changed (``read``): watching batches must not cost a
        feed read every ``pump_every``."""
        after = self._step(read)
        self.mirror()
        return after

    def _step(self, read: bool) -> float | None:
        snap = self.ledger.snapshot(self.db)
        self.pump(snap)
        # a completed batch is in the snapshot, but this pump moved done over it (when at the head)
        still_open = [b for b in snap.batches if b.status != "done"]
        if paused(self.settings, self.db, snap.paused):
            self.idle = not snap.batches
            if self._lag is None:  # paused since this follower started: the lag Redis last kept
                self._lag = self.state.lag(self.db) or 0
            self._gauges(snap, self._lag, paused=True)
            return PAUSED_EVERY
        if len(snap.batches) > self.settings.max_queued_batches:
            self.idle = False
            return self.pump_every
        if snap.batches and not read and not self.buffer:
            self.idle = False
            return self.pump_every
        page = self.read_page()
        self._rows_unmirrored += len(page.results)
        if page.results:
            self.state.record_read(self.lease, self.position)
        if not self.buffer:
            self.buffer_since = time.monotonic()
        self.buffer.update(self.candidates(page.results))
        caught_up = len(page.results) < self.page_size or page.timed_out
        old = time.monotonic() - self.buffer_since >= self.settings.batch_max_wait
        if page.last_seq is not None:
            self.position = page.last_seq
            if len(page.results) < self.page_size and not page.timed_out:
                self.on_caught_up(self.db, page.last_seq)
        created = 0
        size = self.settings.batch_size if caught_up else self.settings.batch_max_size
        if len(self.buffer) >= size or caught_up or old:
            created = self.flush(snap, size)
            if not created and not still_open and self.buffer == {}:
                self.ledger.advance_done(self.lease)  # nothing open: done follows read at once
        lag = sum(len(b.pending) for b in snap.batches) + len(self.buffer) + int(page.pending or 0)
        self.state.set_lag(self.db, lag)
        self._lag = lag
        self._gauges(snap, lag)
        self.idle = caught_up and not self.buffer and not still_open and not created
        self.must_read = not caught_up
        if not caught_up:
            return 0.0  # more to read: again, behind every database already due
        if self.buffer or still_open or created:
            return self.pump_every  # batches to claim, watch and move done over
        return None  # caught up: only the change signal wakes it (an idle database costs no read)

    @property
    def pump_every(self) -> float:
        """Seconds between rounds while batches are open: enough for the recovery rules (which
        count in lease_ttl); completions and new changes wake the database sooner."""
        return max(PUMP_EVERY, min(self.settings.lease_ttl / 3, 2.0))

    def _gauges(self, snap: Snapshot, lag: int, paused: bool = False) -> None:
        """The database's gauges, each round; while paused (nothing is read) with the last lag seen."""
        self.on_event(
            "gauges",
            db=self.db,
            lag=lag,
            checkpoint=snap.checkpoint,
            overlap=snap.overlap,
            dead_letters=snap.dead_letters,
            batches=snap.batches,
            paused=paused,
        )

    def candidates(self, rows: list[ChangeRow]) -> dict[str, list[str]]:
        """Rows with more than one leaf, except those whose leaves are exactly what a worker left
        behind after resolving the document (our own writes coming back through the feed)."""
        multi = {r.id: sorted(r.revs) for r in rows if len(r.revs) > 1}
        known = self.ledger.known_leaves(self.db, list(multi))
        return {doc_id: revs for doc_id, revs in multi.items() if known.get(doc_id) != revs}

    @property
    def page_size(self) -> int:
        """Rows per read: a full page means a backlog, and batches grow to ``batch_max_size``."""
        return max(100, self.settings.batch_size * 4, self.settings.batch_max_size)

    def read_page(self) -> ChangesPage:
        """The next page: a normal (not longpoll) read, so a reader never waits on a quiet database;
        the change signal says when there is something to read."""
        deadline = self.settings.feed_deadline
        return self.client.changes(
            self.db,
            feed="normal",
            since=self.position,
            limit=self.page_size,
            style="all_docs",
            deadline=deadline,
        )

    def flush(self, snap: Snapshot, size: int) -> int:
        """Hand the buffered documents to batches of ``size`` (published at once when claimed), then
        advance ``read`` past them; the number of batches recorded."""
        docs = list(self.buffer)
        chunks = [docs[i : i + size] for i in range(0, len(docs), size)]
        for i, chunk in enumerate(chunks):
            end = self.position if i == len(chunks) - 1 else None
            revs = {d: self.buffer[d] for d in chunk}
            correlation_id, parent = uuid.uuid4().hex[:16], trace.new_traceparent()
            batch_id, claimed = self.ledger.create(self.lease, chunk, end, correlation_id, parent, revs)
            if claimed:
                self.publish(
                    Batch(self.db, batch_id, 0, chunk, "queued", correlation_id, end, parent, revs, chunk)
                )
        self.buffer = {}
        if self.position is not None and self.position != snap.checkpoint.read:
            self.state.write_checkpoint(self.lease, "read", self.position)
        return len(chunks)

    def pump(self, snap: Snapshot) -> None:
        now = self.ledger.clock()
        queued = _Once(self.broker.queued)
        for batch in snap.batches:
            if batch.status == "waiting":
                needed = self.still_needed(batch)
                if self.ledger.claim(self.lease, batch.id, needed):
                    self.publish(dataclasses.replace(batch, docs=needed, pending=needed, status="queued"))
            elif batch.status in ("queued", "retrying") and batch.sent_at is None:
                self.publish(batch)  # claimed (or re-sent) but not published: a death or a refusal
            elif (reason := overdue(batch, now, self.timing, queued)) and self.ledger.resend(
                self.lease, batch
            ):
                log.warning(
                    "re-sending batch %s of %s: %s",
                    batch.id,
                    self.db,
                    reason,
                    extra={"db": self.db, "batch": batch.id, "correlation_id": batch.correlation_id},
                )
                self.on_event("batch_resent", db=self.db, status=batch.status)
                self.publish(dataclasses.replace(batch, status="queued", sent_at=None))
        head = snap.batches[0] if snap.batches else None
        cp = snap.checkpoint
        if (head is not None and head.status == "done") or (head is None and cp.read != cp.done):
            self.ledger.advance_done(self.lease)

    def publish(self, batch: Batch) -> bool:
        """Hand one delivery of ``batch`` to the broker; on failure back off (the batch stays
        claimed-but-unpublished and the next round tries again)."""
        if time.monotonic() < self._publish_blocked_until:
            return False
        failpoints.hit("before_publish")
        try:
            self.broker.send(batch)
        except Exception as exc:
            self._publish_failures += 1
            wait = self._backoff.delay(min(self._publish_failures, 6))
            self._publish_blocked_until = time.monotonic() + wait
            self.on_event("publish_failed", db=self.db)
            log.warning(
                "could not publish batch %s of %s (next try in %.1fs): %s: %s",
                batch.id,
                self.db,
                wait,
                type(exc).__name__,
                exc,
                extra={"db": self.db, "batch": batch.id},
            )
            return False
        self._publish_failures = 0
        self.ledger.sent(self.lease, batch.id)
        self.on_event("batch_sent", db=self.db, docs=len(batch.pending), first=batch.sends == 0)
        extra = {
            "db": self.db,
            "batch": batch.id,
            "correlation_id": batch.correlation_id,
            "trace_id": trace.trace_id(batch.traceparent),
        }
        log.info("batch %s of %s sent: %d documents", batch.id, self.db, len(batch.pending), extra=extra)
        return True

    def still_needed(self, batch: Batch) -> list[str]:
        """The batch's documents minus those a worker has since left with exactly the leaves the
        feed showed (a batch that waited for an in-flight batch often holds only our own writes)."""
        known = self.ledger.known_leaves(self.db, batch.docs)
        return [d for d in batch.docs if not batch.revs.get(d) or known.get(d) != batch.revs[d]]

    def mirror(self, force: bool = False) -> None:
        """Copy ``done`` into the database (``_local``: never replicated), in one request, with the
        lease's fencing token (a mirror written by a holder older than a reset is ignored): when the
        lease is released, and otherwise at most every ``MIRROR_EVERY`` s once ``MIRROR_ROWS`` feed
        rows were read since the last mirror or the last mirror was written while ``done`` was behind
        ``read`` (batches open: it is written again once they complete). After Redis lost its data a
        follower resumes from the mirror: it replays about ``MIRROR_ROWS`` rows, or what was open, at
        most; a quiet database costs no write for each of its few changes."""
        if not force and (
            time.monotonic() - self._mirror_at < MIRROR_EVERY
            or (self._rows_unmirrored < MIRROR_ROWS and not self._mirror_behind)
        ):
            return
        cp = self.state.checkpoint(self.db)
        done = cp.done
        if done is None or done == self._mirrored:
            return
        try:
            self._mirror_rev = self.client.put_local(
                self.db,
                MIRROR,
                {"done": done, "token": self.lease.token, "at": time.time()},
                rev=self._mirror_rev,
            )
            self._mirrored, self._mirror_at, self._rows_unmirrored = done, time.monotonic(), 0
            self._mirror_behind = cp.read != done
        except CouchError as exc:
            log.warning("could not mirror the checkpoint of %s: %s", self.db, exc)


class _Once:
    """A value computed at most once, when first asked (what the broker's queue holds, per round)."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute
        self.done = False
        self.value: Any = None

    def __call__(self) -> Any:
        if not self.done:
            self.value, self.done = self.compute(), True
        return self.value
