"""The change signal: which of the followed databases changed, so only those are read.

Where the server has ``_db_updates`` (CouchDB with ``_global_changes``), one longpoll feed per
dispatcher, resumed from the farm's own checkpoint of it (``couchfarm:<farm>:db-updates``), reports
``updated``/``created``/``deleted`` events. Elsewhere (pouchdb-server, CouchDB without
``_global_changes``), the ``update_seq`` of every idle database this dispatcher holds is polled every
``change_poll_interval`` (``POST /_dbs_info`` in bulk on CouchDB, ``GET /{db}`` one at a time
otherwise; at most ``POLL_RATE`` databases a second); one at work is not polled (its follower reads
again when its batches complete). A poll compares with what the database had at the last poll and
with the ``last_seq`` of its follower's last read to the end: equal to either, nothing changed since
(on CouchDB the two values never compare equal, so there the last poll's counts alone). A changed
database's new value becomes its baseline only once its mark is written, so a mark lost to an error
is found again at the next poll. With ``_db_updates``, the same poll runs every ``SWEEP_EVERY``
seconds as a sweep, in case the feed missed an update. A worker that completes a batch marks its
database too (the holder moves ``done`` and claims what waited). Either way a change marks the
database dirty in Redis (``couchfarm:<farm>:dirty``, so a new lease holder knows too) and wakes its
follower; a ``created``/``deleted`` event makes discovery look again. A second thread looks at the
marks of the databases held every ``MARKS_EVERY`` s (one Redis call), so a completion or another
dispatcher's mark wakes the follower at once, not at the end of a long poll. Nothing else reads an
idle database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError
from couchfarm.reads import update_seqs
from couchfarm.settings import Settings
from couchfarm.state import FarmState

log = logging.getLogger("couchfarm.dispatcher")
POLL_RATE = 100.0  #: databases a second a dispatcher asks for their update_seq, at most
MARKS_EVERY = 0.25  #: seconds between two looks at the dirty marks of the databases held
SWEEP_EVERY = 300.0  #: seconds between two polls of every idle database where ``_db_updates`` is followed


class ChangeSignal:
    def __init__(
        self,
        client: CouchClient,
        state: FarmState,
        settings: Settings,
        held: Callable[[], set[str]],
        wake: Callable[[str], None],
        on_created_or_deleted: Callable[[], None],
        busy: Callable[[], set[str]] = set,
        follows: Callable[[str], bool] = lambda db: True,
    ) -> None:
        self.client, self.state, self.settings = client, state, settings
        self.held, self.wake, self.on_created_or_deleted = held, wake, on_created_or_deleted
        #: held databases whose follower reads again anyway (a first round to come, more to read, or
        #: batches open, whose completion marks the database): their update_seq is not polled
        self.busy = busy
        #: whether the farm follows a database at all: ``_db_updates`` reports every database on the
        #: server, and a mark nobody would ever take must not stay in Redis
        self.follows = follows
        self._polled = 0  #: databases asked at the last poll
        self.stop = threading.Event()
        self.has_db_updates: bool | None = None  #: None until the server answered once
        self._seqs: dict[str, Any] = {}  #: the update_seq each held database had at the last poll
        self._read: dict[str, Any] = {}  #: the last_seq of each held database's last read to the end
        self._pending: dict[str, Any] = {}  #: the polled seqs of changed databases, kept once marked
        self._seqs_lock = threading.Lock()
        self._swept_at = time.monotonic()
        self._failures = 0
        self.thread: threading.Thread | None = None
        self.marks_thread: threading.Thread | None = None

    def start(self) -> ChangeSignal:
        self.thread = threading.Thread(target=self._run, name="change-signal", daemon=True)
        self.thread.start()
        self.marks_thread = threading.Thread(target=self._watch_marks, name="dirty-marks", daemon=True)
        self.marks_thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                changed = self._db_updates() if self.has_db_updates is not False else None
                polled = changed is None
                if changed is None:
                    changed = self._poll()
                elif time.monotonic() - self._swept_at >= SWEEP_EVERY:
                    self._swept_at = time.monotonic()
                    changed |= self._poll()
                self._signal(changed)
                self._keep_polled()  # only once marked: a mark lost to an error is found again
                if polled:
                    self.stop.wait(self.poll_interval)
                self._failures = 0
            except Exception as exc:  # CouchDB or Redis unreachable: the followers' own rounds go on
                self._failures += 1
                log.warning("change signal failed (try %d): %s", self._failures, exc)
                self.stop.wait(min(30.0, self.settings.change_poll_interval * 2**self._failures))

    def _db_updates(self) -> set[str] | None:
        """Databases ``_db_updates`` reports changed; None where the server has no such feed."""
        timeout = int(min(self.settings.feed_deadline, self.settings.change_poll_interval) * 1000)
        page = self.client.db_updates(since=self.state.db_updates_since() or "now", timeout_ms=timeout)
        if page is None:
            if self.has_db_updates is None:
                log.info("no _db_updates on %s: polling update_seq of the followed databases", self.client)
            self.has_db_updates = False
            return None
        self.has_db_updates = True
        if page.last_seq is not None:
            self.state.set_db_updates_since(page.last_seq)
        if any(row.revs and row.revs[0] in ("created", "deleted") for row in page.results):
            self.on_created_or_deleted()
        return {row.id for row in page.results}

    def _watch_marks(self) -> None:
        """Every ``MARKS_EVERY`` s, wake the held databases marked dirty (a worker completed a batch,
        another dispatcher's signal saw a change): one Redis call, whatever CouchDB is doing, so a
        completion is followed up at once rather than at the end of a long poll."""
        while not self.stop.wait(MARKS_EVERY):
            try:
                for db in self.state.dirty_among(sorted(self.held())):
                    self.wake(db)
            except Exception as exc:  # Redis unreachable: the followers' own rounds find out
                log.debug("could not read the dirty marks: %s", exc)

    def read_to(self, db: str, last_seq: Any) -> None:
        """``db``'s follower read its feed to the end, at ``last_seq``: an ``update_seq`` equal to it
        means nothing changed since (pouchdb-server; CouchDB's two values never compare equal, and
        there the poll compares with the last poll alone)."""
        with self._seqs_lock:
            self._read[db] = last_seq

    def _keep_polled(self) -> None:
        with self._seqs_lock:
            self._seqs.update(self._pending)
            self._pending = {}

    @property
    def poll_interval(self) -> float:
        """``change_poll_interval``, stretched so that polling never asks more than ``POLL_RATE``
        databases a second (an idle database must cost little)."""
        return max(self.settings.change_poll_interval, self._polled / POLL_RATE)

    def _poll(self) -> set[str]:
        """Idle held databases whose ``update_seq`` differs from both the last poll's and the
        follower's last read to the end (one with neither counts as changed: its follower reads it
        once more), or that are gone. Busy ones are left out: a database at work costs no poll, so a
        backlog does not pay for the signal."""
        held = self.held()
        quiet = sorted(held - self.busy())
        self._polled = len(quiet)
        try:
            seqs = update_seqs(self.client, quiet)
        except CouchError as exc:
            log.warning("could not poll update_seq: %s", exc)
            return set()
        with self._seqs_lock:
            changed = {
                db
                for db, seq in seqs.items()
                if seq != self._seqs.get(db, _UNSEEN) and seq != self._read.get(db, _UNSEEN)
            }
            changed |= set(quiet) - set(seqs)  # gone: its follower's read finds out and drops it
            kept = {db: seq for db, seq in self._seqs.items() if db in held and db not in seqs}
            # a changed database's new seq becomes its baseline only once its mark is written
            self._seqs = {**kept, **{db: seq for db, seq in seqs.items() if db not in changed}}
            self._pending = {db: seqs[db] for db in changed if db in seqs}
            self._read = {db: seq for db, seq in self._read.items() if db in held}
        return changed

    def _signal(self, changed: set[str]) -> None:
        held = self.held()
        if self.has_db_updates is False:
            marked = changed & held
        else:  # held elsewhere too: that holder's signal may have missed it
            marked = {db for db in changed if self.follows(db)}
        self.state.mark_dirty(sorted(marked))
        for db in changed & held:  # marks made elsewhere: the marks thread (_watch_marks)
            self.wake(db)


_UNSEEN: Any = object()
