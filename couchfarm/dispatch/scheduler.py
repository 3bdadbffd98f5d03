"""A fixed pool of feed readers shared by every database a dispatcher follows.

Each database is a key; ``run(db)`` does one round of its follower and says when it wants the next
one: ``0`` (more to read: again, behind every database already due), a delay (batches are open:
look again soon), or ``None`` (caught up: sleep until ``wake``). A database is run by at most one
reader at a time; the readers take the earliest due first, so a busy database cannot starve the
others, and at most ``readers`` rounds (feed reads) run at once, whatever the number of databases.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("couchfarm.dispatcher")
Round = Callable[[str], "float | None"]


class Scheduler:
    def __init__(self, readers: int, run: Round, clock: Callable[[], float] = time.monotonic) -> None:
        self.readers = readers
        self.run = run
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, str]] = []
        self._due: dict[str, float] = {}  #: the database's place in the heap (its other entries are stale)
        self._running: set[str] = set()
        self._again: set[str] = set()  #: woken while running: run again right after
        self._members: set[str] = set()
        self._seq = itertools.count()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- membership -----------------------------------------------------------------------------

    def add(self, db: str) -> None:
        """Follow ``db``: its first round is due now."""
        with self._cond:
            self._members.add(db)
            self._push(db, self.clock())

    def remove(self, db: str) -> None:
        """Stop running ``db`` (a round in progress finishes)."""
        with self._cond:
            self._members.discard(db)
            self._due.pop(db, None)
            self._again.discard(db)

    def wake(self, db: str) -> None:
        """``db`` changed: a round is due now (or right after the one running)."""
        with self._cond:
            if db not in self._members:
                return
            if db in self._running:
                self._again.add(db)
            elif self._due.get(db, float("inf")) > self.clock():
                self._push(db, self.clock())

    def members(self) -> set[str]:
        with self._cond:
            return set(self._members)

    def idle(self) -> bool:
        """No round running and none due now."""
        with self._cond:
            now = self.clock()
            return not self._running and all(due > now for due in self._due.values())

    # -- the readers ----------------------------------------------------------------------------

    def start(self) -> Scheduler:
        for i in range(self.readers):
            thread = threading.Thread(target=self._reader, name=f"feed-reader-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, join: float = 0.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        end = time.monotonic() + join  # one deadline for every reader, not one each
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))

    def _push(self, db: str, due: float) -> None:
        self._due[db] = due
        heapq.heappush(self._heap, (due, next(self._seq), db))
        self._cond.notify()

    def _take(self) -> str | None:
        """The earliest due database, waiting for one; None when stopping."""
        with self._cond:
            while not self._stop.is_set():
                while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # stale: moved, removed, or taken
                if self._heap and self._heap[0][0] <= self.clock():
                    _, _, db = heapq.heappop(self._heap)
                    del self._due[db]
                    self._running.add(db)
                    return db
                timeout = self._heap[0][0] - self.clock() if self._heap else None
                self._cond.wait(timeout if timeout is None else max(0.0, min(timeout, 1.0)))
            return None

    def _reader(self) -> None:
        while (db := self._take()) is not None:
            try:
                after = self.run(db)
            except Exception:  # a round catches its own errors; this is a last resort
                log.exception("round of %s failed", db)
                after = 1.0
            with self._cond:
                self._running.discard(db)
                if db not in self._members:
                    continue
                if db in self._again:
                    self._again.discard(db)
                    after = 0.0
                if after is not None:
                    self._push(db, self.clock() + after)
