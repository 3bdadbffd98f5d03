"""One database's ``_changes`` follower, run while this dispatcher holds the database's lease.

Steps of one round (each write fenced by the lease, see couchfarm/state.py):
1. pump: claim waiting batches whose documents are not in flight and send them to the workers;
   re-send a queued batch that nobody has touched for longer than a task can live; move ``done``
   over completed batches and mirror it to ``_local/couchfarm-checkpoint`` in the database;
2. back-pressure: while more than ``max_queued_batches`` batches are open, do not read;
3. read one page from ``read`` (longpoll with heartbeat and a client-side deadline; a normal read
   in ``--until-idle`` mode), keep the rows with more than one leaf (``style=all_docs``);
4. when the buffer is full, old, or the feed is caught up: record the batches, then advance ``read``
   (checkpoint only after hand-off: a crash costs a replay, never a loss).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from couchfarm import trace
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.errors import CouchError, LeaseLost
from couchfarm.feeds import Seq
from couchfarm.settings import Settings
from couchfarm.state import Batch, FarmState, Lease

log = logging.getLogger("couchfarm.dispatcher")
MIRROR = "couchfarm-checkpoint"  #: name of the ``_local`` document that mirrors ``done``
Send = Callable[[Batch], None]  #: hands one batch to the workers


class Follower:
    def __init__(
        self,
        client: CouchClient,
        state: FarmState,
        lease: Lease,
        settings: Settings,
        send: Send,
        *,
        until_idle: bool = False,
        on_event: Callable[..., None] | None = None,
    ) -> None:
        self.client, self.state, self.lease, self.settings = client, state, lease, settings
        self.db = lease.db
        self.send = send
        self.until_idle = until_idle
        self.on_event = on_event or (lambda name, **kw: None)
        self.stop = threading.Event()
        self.idle = False  #: caught up, nothing buffered, nothing open
        self.lost = False
        self.buffer: dict[str, list[str]] = {}  #: document -> its leaf revs as the feed showed them
        self.buffer_since = 0.0
        self.position: Seq = None
        self._mirrored: Seq = object()
        self._mirror_at = 0.0
        self.thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Follower:
        self.thread = threading.Thread(target=self.run, name=f"follow:{self.db}", daemon=True)
        self.thread.start()
        return self

    def run(self) -> None:
        try:
            self.resume()
            while not self.stop.is_set():
                try:
                    self.step()
                except CouchError as exc:
                    log.warning("feed of %s failed: %s", self.db, exc, extra={"db": self.db})
                    self.stop.wait(1.0)
        except LeaseLost:
            self.lost = True
            self.on_event("lease_lost", db=self.db)
            log.warning("lease of %s lost: stepping down", self.db, extra={"db": self.db})
        except Exception:
            self.lost = True
            log.exception("follower of %s crashed", self.db, extra={"db": self.db})

    def resume(self) -> None:
        """Continue from ``read``; with no Redis checkpoint, from the ``_local`` mirror of ``done``."""
        cp = self.state.checkpoint(self.db)
        if cp.known:
            self.position = cp.read
            return
        mirror = self.client.get_local(self.db, MIRROR)
        if mirror is not None and "done" in mirror:
            self.position = mirror["done"]
            self.state.write_checkpoint(self.lease, "read", self.position)
            self.state.write_checkpoint(self.lease, "done", self.position)
            log.info(
                "no checkpoint in Redis for %s: resuming from its _local mirror",
                self.db,
                extra={"db": self.db, "since": self.position},
            )

    # -- one round ------------------------------------------------------------------------------

    def paused(self) -> bool:
        rule = self.settings.rule_for(self.db)
        return (rule is not None and rule.paused) or self.state.is_paused(self.db)

    def step(self) -> None:
        self.pump()
        if self.paused():
            self.idle = not self.state.batches(self.db)
            self.stop.wait(0.25)
            return
        open_batches = self.state.batches(self.db)
        if len(open_batches) > self.settings.max_queued_batches:
            self.idle = False
            self.stop.wait(0.2)
            return
        page = self.read_page(busy=bool(open_batches))
        if page is None:
            return
        if page.results:
            self.state.record_read(self.lease, self.position)
        if not self.buffer:
            self.buffer_since = time.monotonic()
        self.buffer.update(self.candidates(page.results))
        caught_up = len(page.results) < self.page_size or page.timed_out
        old = time.monotonic() - self.buffer_since >= self.settings.batch_max_wait
        if page.last_seq is not None:
            self.position = page.last_seq
        if len(self.buffer) >= self.settings.batch_size or caught_up or old:
            self.flush()
        docs_open = sum(len(b.docs) for b in self.state.batches(self.db))
        lag = docs_open + len(self.buffer) + int(page.pending or 0)
        self.state.set_lag(self.db, lag)
        self.on_event(
            "gauges",
            db=self.db,
            lag=lag,
            checkpoint=self.state.checkpoint(self.db),
            overlap=self.state.overlap(self.db),
            dead_letters=DeadLetters(self.state.redis).count(self.db),
        )
        self.idle = caught_up and not self.buffer and not self.state.batches(self.db)
        if caught_up and self.until_idle:
            self.stop.wait(0.2 if self.idle else 0.05)

    def candidates(self, rows: list[Any]) -> dict[str, list[str]]:
        """Rows with more than one leaf, except those whose leaves are exactly what a worker left
        behind after resolving the document (our own writes coming back through the feed)."""
        multi = {r.id: sorted(r.revs) for r in rows if len(r.revs) > 1 and not r.id.startswith("_design/")}
        known = self.state.known_leaves(self.db, list(multi))
        return {doc_id: revs for doc_id, revs in multi.items() if known.get(doc_id) != revs}

    @property
    def page_size(self) -> int:
        return max(100, self.settings.batch_size * 4)

    def read_page(self, busy: bool) -> Any:
        """The next page; while batches are open the longpoll is short, so that batches waiting on
        an in-flight document are claimed and ``done`` moves soon after their turn comes."""
        feed = "normal" if self.until_idle else "longpoll"
        deadline = min(0.25, self.settings.feed_deadline) if busy else self.settings.feed_deadline
        return self.client.changes(
            self.db,
            feed=feed,
            since=self.position,
            limit=self.page_size,
            style="all_docs",
            heartbeat=max(100, int(deadline * 250)) if feed == "longpoll" else None,
            timeout=int(deadline * 1000) if feed == "longpoll" else None,
            deadline=deadline * 1.5 + 0.5,
        )

    def flush(self) -> None:
        """Hand the buffered documents to batches, then advance ``read`` past them."""
        docs = list(self.buffer)
        size = self.settings.batch_size
        chunks = [docs[i : i + size] for i in range(0, len(docs), size)]
        for i, chunk in enumerate(chunks):
            end = self.position if i == len(chunks) - 1 else None
            revs = {d: self.buffer[d] for d in chunk}
            self.state.create_batch(
                self.lease, chunk, end, uuid.uuid4().hex[:16], trace.new_traceparent(), revs
            )
        self.buffer = {}
        if self.position is not None and self.position != self.state.checkpoint(self.db).read:
            self.state.write_checkpoint(self.lease, "read", self.position)
        self.pump()

    def pump(self) -> None:
        now = time.time()
        stale = (
            self.settings.task_time_limit * (self.settings.max_retries + 2) + self.settings.retry_backoff_max
        )
        for batch in self.state.batches(self.db):
            if batch.status == "waiting":
                needed = self.still_needed(batch)
                if self.state.claim(self.lease, batch.id, needed):
                    self.hand_off(dataclasses.replace(batch, docs=needed))  # what was claimed
            elif batch.status == "queued" and now - batch.touched_at > stale:
                log.warning(
                    "re-sending batch %s of %s: untouched for %.0fs",
                    batch.id,
                    self.db,
                    now - batch.touched_at,
                )
                self.state.touch(self.db, batch.id)
                self.send(batch)
        self.state.advance_done(self.lease)
        self.mirror()

    def hand_off(self, batch: Batch) -> None:
        self.send(batch)
        self.on_event("batch_sent", db=self.db, docs=len(batch.docs))
        extra = {
            "db": self.db,
            "batch": batch.id,
            "correlation_id": batch.correlation_id,
            "trace_id": trace.trace_id(batch.traceparent),
        }
        log.info("batch %s of %s sent: %d documents", batch.id, self.db, len(batch.docs), extra=extra)

    def still_needed(self, batch: Batch) -> list[str]:
        """The batch's documents minus those a worker has since left with exactly the leaves the
        feed showed (a batch that waited for an in-flight batch often holds only our own writes)."""
        known = self.state.known_leaves(self.db, batch.docs)
        return [d for d in batch.docs if not batch.revs.get(d) or known.get(d) != batch.revs[d]]

    def mirror(self, force: bool = False) -> None:
        """Copy ``done`` into the database (``_local``: never replicated), at most every 2 s."""
        done = self.state.checkpoint(self.db).done
        if done is None or done == self._mirrored or (not force and time.monotonic() - self._mirror_at < 2.0):
            return
        try:
            self.client.put_local(self.db, MIRROR, {"done": done, "at": time.time()})
            self._mirrored, self._mirror_at = done, time.monotonic()
        except CouchError as exc:
            log.warning("could not mirror the checkpoint of %s: %s", self.db, exc)
