"""The dispatcher: leases databases fairly across dispatcher processes and runs a follower per lease.

Each round (every ``lease_ttl / 3`` at most):
1. heartbeat, so other dispatchers can count live peers;
2. discover databases: explicit names, and globs resolved through ``_db_updates`` where the server
   has it, else by polling ``_all_dbs`` every ``discovery_interval`` (new ones picked up, deleted ones
   dropped);
3. renew held leases; a follower whose lease is lost (renewal refused, or a fenced write refused)
   is stopped;
4. fair share, as the Cosmos DB change feed processor does: with N live dispatchers and D databases
   each holds at most ceil(D / N); surplus is released for a newcomer to take, and free leases
   (never taken, released, or expired from a dead dispatcher) are taken up to the share;
5. report (``on_event``, for the metrics): which discovered databases it follows, and, at most every
   ``REDIS_PROBE_EVERY`` s, whether the state Redis answers and its memory. A failed round reports
   that it follows nothing: it renews no lease, so its leases run out within ``lease_ttl``.

Between rounds a keeper thread heartbeats and renews every held lease each ``lease_ttl / 3``: a round
slowed by a busy CouchDB (discovery, the durable copies) must not let a thousand leases lapse and
flap between dispatchers. The keeper stops renewing as soon as a round fails, or when one has been
running for ``ROUND_STALL`` s, so a dispatcher that cannot do its work still lets its leases go.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetters
from couchfarm.dispatch.discovery import Discovery
from couchfarm.dispatch.follower import DELETED, Broker, Follower
from couchfarm.dispatch.scheduler import Scheduler
from couchfarm.dispatch.signal import ChangeSignal
from couchfarm.durable import Durable
from couchfarm.errors import BadRequest, Forbidden, NotFound, Unauthorized
from couchfarm.ledger import Ledger
from couchfarm.names import db_name_problem
from couchfarm.settings import Settings
from couchfarm.state import FarmState, Lease

log = logging.getLogger("couchfarm.dispatcher")


def fatal(exc: Exception) -> bool:
    """Errors no retry can mend: refused credentials (retrying them risks CouchDB's lockout)."""
    return isinstance(exc, Unauthorized | Forbidden)


PROBLEM_PAUSE = 60.0  #: seconds a database that could not be followed is left alone before a new try
MOVING_EVERY = 0.5  #: seconds between rounds while leases are still being taken or given up
MOVES_PER_ROUND = 200  #: leases taken or given up by one dispatcher in one round (no herd, no stall)
RECONCILE_EVERY = 60.0  #: seconds between checks that Redis still holds every durable dead letter and pause
REDIS_PROBE_EVERY = 5.0  #: seconds between two reads of the state Redis's INFO memory (metrics only)
ROUND_STALL = 60.0  #: seconds a round may run before the keeper stops renewing this dispatcher's leases


class Dispatcher:
    def __init__(
        self,
        client: CouchClient,
        state: FarmState,
        ledger: Ledger,
        settings: Settings,
        broker: Broker,
        names: Iterable[str],
        *,
        until_idle: bool = False,
        on_event: Callable[..., None] | None = None,
        durable: tuple[Durable, DeadLetters] | None = None,
    ) -> None:
        self.client, self.state, self.ledger, self.settings = client, state, ledger, settings
        self.broker = broker
        own = {settings.state_db, *([settings.archive_db] if settings.archive_db else [])}
        self.discovery = Discovery(client, names, settings.discovery_interval, exclude=own)
        self.durable = durable
        self._reconciled_at = float("-inf")
        self.until_idle = until_idle
        self.on_event = on_event or (lambda name, **kw: None)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.followers: dict[str, Follower] = {}
        self.stop = threading.Event()
        self.scheduler = Scheduler(settings.feed_readers, self._follow)
        self.signal = ChangeSignal(
            client,
            state,
            settings,
            self.scheduler.members,
            self.scheduler.wake,
            self.discovery.invalidate,
            busy=lambda: {db for db, f in list(self.followers.items()) if not f.idle},
            follows=self.discovery.follows,
        )
        self._rng = random.Random()
        self._moving = False  #: the last round moved as many leases as a round may, and more remain
        self._dbs: list[str] = []  #: the databases the last round discovered
        self.problems: dict[str, str] = {}  #: databases that cannot be followed, and why
        self.ended = ""  #: why an until-idle run ended early
        self.ended_by: Exception | None = None  #: the error that ended it, if one did
        self._failures = 0  #: rounds failed in a row
        self._told_empty = False
        self._problem_at: dict[str, float] = {}
        self._probed_at = float("-inf")
        self._round_started: float | None = None  #: when the round in progress started (None: between)
        self._keeper = threading.Thread(target=self._keep_leases, name="lease-keeper", daemon=True)
        self._halted = threading.Event()  #: set by shutdown: the keeper stops

    @property
    def databases(self) -> list[str]:
        """The databases the last round found to follow."""
        return list(self._dbs)

    @property
    def ttl(self) -> float:
        return self.settings.lease_ttl

    def run(self, max_seconds: float | None = None) -> bool:
        """Until stopped (or, in ``until_idle`` mode, until every database it can follow is caught
        up and resolved); True when it ended idle with no database given up on (``problems``).
        In ``until_idle`` mode a run also ends, with ``ended`` saying why, when its glob matches
        nothing or its rounds keep failing (CouchDB or Redis unreachable, credentials refused)."""
        started = time.monotonic()
        log.info("dispatcher %s starting", self.id, extra={"dispatcher": self.id})
        self.scheduler.start()
        self.signal.start()
        self._keeper.start()
        try:
            while not self.stop.is_set():
                try:
                    self._round_started = time.monotonic()
                    dbs = self.round()
                    self._failures = 0
                except Exception as exc:  # a Redis or CouchDB blip must not end the dispatcher
                    self._failures += 1
                    log.warning("dispatcher round failed: %s", exc, extra={"dispatcher": self.id})
                    self.on_event("followed", dbs=self._dbs, held=[])
                    if self.until_idle and (self._failures > self.settings.couch_retries or fatal(exc)):
                        self.ended = f"its rounds keep failing: {type(exc).__name__}: {exc}"
                        self.ended_by = exc
                        return False
                    self.stop.wait(1.0)
                    continue
                finally:
                    self._round_started = None
                if self.until_idle and self.ended:
                    return False
                if self.until_idle and self._all_idle(dbs):
                    return not self.problems
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    busy = sorted(db for db in dbs if db not in self.problems and not self._idle(db))
                    self.ended = f"not idle after {max_seconds:g}s: {', '.join(busy[:10]) or 'none'}"
                    return False
                pause = min(self.ttl / 3, 1.0 if self.until_idle else self.ttl / 3)
                self.stop.wait(MOVING_EVERY if self._moving else pause)
            return False
        finally:
            self.shutdown()

    def round(self) -> list[str]:
        self._probe_redis()
        self.state.heartbeat(self.id)
        self._keep_durable()
        dbs = [db for db in self.discovery.databases() if not self._set_aside(db)]
        if not dbs and self.discovery.globs and not self._told_empty:
            message = f"no database matches {', '.join(self.discovery.globs)}"
            if self.until_idle:
                self.ended = message
            else:
                log.warning("%s: waiting for one to be created", message, extra={"dispatcher": self.id})
            self._told_empty = True
        self._renew(dbs)
        peers = max(1, len(self.state.live_dispatchers(self.ttl)))
        share = math.ceil(len(dbs) / peers) if dbs else 0
        self._rebalance(dbs, share)
        self._dbs = dbs
        self.on_event("followed", dbs=dbs, held=sorted(self.followers))
        return dbs

    def _probe_redis(self) -> None:
        """Whether the state Redis answers, and its memory, for the metrics; never raises (the round
        that follows fails on its own when Redis is gone)."""
        if time.monotonic() - self._probed_at < REDIS_PROBE_EVERY:
            return
        self._probed_at = time.monotonic()
        try:
            memory = self.state.memory()
        except Exception as exc:
            log.debug("state Redis probe failed: %s", exc)
            self.on_event("redis", up=False)
            return
        self.on_event("redis", up=True, memory=memory)

    def _keep_durable(self) -> None:
        """Put back what Redis lost: everything when its ``restored`` marker is gone (before any
        follower reads, so a paused database stays paused), and, every minute, what a failover may
        have dropped since."""
        if self.durable is None:
            return
        durable, dead_letters = self.durable
        if (
            durable.restore(self.state, dead_letters)
            or time.monotonic() - self._reconciled_at >= RECONCILE_EVERY
        ):
            durable.reconcile(self.state, dead_letters)
            self._reconciled_at = time.monotonic()

    def _follow(self, db: str) -> float | None:
        """One round of ``db``'s follower, run by a feed reader."""
        follower = self.followers.get(db)
        return follower.round() if follower is not None else None

    def _keep_leases(self) -> None:
        """The keeper thread: heartbeat and renew every held lease each ``ttl / 3`` while rounds
        succeed; a follower whose lease was not renewed learns it lost it (its writes were fenced
        off already). Never raises: a Redis that does not answer lets the leases run out."""
        while not self._halted.wait(self.ttl / 3) and not self.stop.is_set():
            started = self._round_started
            if self._failures or (started is not None and time.monotonic() - started > ROUND_STALL):
                continue
            try:
                self.state.heartbeat(self.id)
                self._renew_held()
            except Exception as exc:
                log.debug("lease keeper: %s", exc, extra={"dispatcher": self.id})

    def _renew_held(self) -> set[str]:
        """Every held lease renewed in one round trip; the databases still held. A follower whose
        renewal was refused is marked lost."""
        followers = [f for f in list(self.followers.values()) if not f.lost]
        renewed = self.state.renew_many([f.lease for f in followers], self.ttl)
        for follower in followers:
            if follower.db not in renewed:
                follower.lost = True
        return renewed

    def _renew(self, dbs: list[str]) -> None:
        """Every held lease renewed in one round trip; the lost and the deleted dropped."""
        renewed = self._renew_held()
        wanted = set(dbs)
        for db, follower in list(self.followers.items()):
            if follower.problem is not None:  # deleted under it, or access refused: said once, dropped
                self.problems[db] = follower.problem
                self._problem_at[db] = time.monotonic()
                log.warning("no longer following %s: %s", db, follower.problem, extra={"db": db})
                self._drop(db, release=not follower.lost)
                if follower.problem == DELETED:
                    self.state.forget(db)
                continue
            gone = db not in wanted
            if follower.lost or gone or db not in renewed:
                self._drop(db, release=gone and not follower.lost)
                if gone:
                    log.info("%s is gone: no longer followed", db, extra={"db": db, "dispatcher": self.id})
                    self.state.forget(db)
                if not gone:
                    self.on_event("lease_lost", db=db)
                    log.warning("lost the lease of %s", db, extra={"db": db, "dispatcher": self.id})

    def _rebalance(self, dbs: list[str], share: int) -> None:
        """Give up surplus, take free leases up to the share: at most ``MOVES_PER_ROUND`` each way per
        round, in an order of this dispatcher's own (dispatchers that join together do not all race
        for the same databases), all attempts in one round trip."""
        surplus = len(self.followers) - share
        for db in sorted(self.followers)[: min(max(0, surplus), MOVES_PER_ROUND)]:
            log.info(
                "releasing %s to rebalance (share %d)", db, share, extra={"db": db, "dispatcher": self.id}
            )
            self._drop(db, release=True, mirror=False)
        want = min(share - len(self.followers), MOVES_PER_ROUND)
        free = [db for db in dbs if db not in self.followers and db not in self.problems]
        self._rng.shuffle(free)
        # every candidate goes to Redis (it stops at ``want`` taken): most of them are the other
        # dispatchers' leases, and a new database among hundreds of those must still be found
        taken = self.state.acquire_many(free, self.id, self.ttl, want)
        for lease in taken:
            if not self._exists(lease.db):
                self.state.release(lease)
                continue
            self._start(lease)
        # more to give up or to take than one round moves: the next round comes soon, not in
        # ttl / 3 (a lone dispatcher takes 1,000 free leases in seconds)
        self._moving = surplus > MOVES_PER_ROUND or (0 < want == len(taken) and len(self.followers) < share)

    def _exists(self, db: str) -> bool:
        """Names given explicitly may not exist (or not be database names at all); names a glob
        matched came from ``_all_dbs``. A name that cannot be followed is a problem, said once."""
        if db in self.discovery.patterned:
            return True
        reason = db_name_problem(db)
        if reason is None:
            try:
                self.client.db_info(db)
                self.problems.pop(db, None)
                return True
            except NotFound:
                reason = "does not exist"
            except BadRequest as exc:
                reason = f"is not a database name ({exc.reason})"
        if db not in self.problems:
            log.warning("%s: %s: not followed", db, reason, extra={"db": db, "dispatcher": self.id})
        self.problems.setdefault(db, reason)
        self._problem_at[db] = time.monotonic()
        return False

    def _start(self, lease: Lease) -> None:
        db = lease.db
        self.on_event("lease_acquired", db=db)
        log.info("following %s (token %d)", db, lease.token, extra={"db": db, "dispatcher": self.id})
        self.followers[db] = Follower(
            self.client,
            self.state,
            self.ledger,
            lease,
            self.settings,
            self.broker,
            until_idle=self.until_idle,
            on_event=self.on_event,
            on_caught_up=self.signal.read_to,
        )
        self.scheduler.add(db)

    def _drop(self, db: str, release: bool, mirror: bool = True) -> None:
        """Stop following ``db``. A round in progress is not waited for: once the lease is released
        or lost, every write it could still attempt is fenced off. A lease handed over to rebalance
        is released without a last mirror (``mirror=False``: the next holder reads the checkpoint
        from Redis and mirrors it itself; a mirror a little behind only means changes read twice)."""
        follower = self.followers.pop(db)
        self.scheduler.remove(db)
        if release and not follower.lost:
            if mirror:
                follower.mirror(force=True)
            self.state.release(follower.lease)

    def _all_idle(self, dbs: list[str]) -> bool:
        wanted = set(dbs) - set(self.problems)
        return not wanted or (
            wanted <= set(self.followers) and all(self._idle(db) for db in wanted) and self.scheduler.idle()
        )

    def _set_aside(self, db: str) -> bool:
        """A database with a problem is not followed: in an until-idle run for good, otherwise
        for ``PROBLEM_PAUSE`` seconds at a time (a refused password must not be retried in a loop:
        CouchDB locks the account out)."""
        if db not in self.problems:
            return False
        if self.until_idle:
            return True
        if time.monotonic() - self._problem_at.get(db, 0.0) < PROBLEM_PAUSE:
            return True
        self.problems.pop(db)
        return False

    def _idle(self, db: str) -> bool:
        follower = self.followers.get(db)
        return follower is not None and follower.idle

    def shutdown(self) -> None:
        """Clean shutdown: stop the readers and the signal, mirror checkpoints, release every lease."""
        self.signal.stop.set()
        self.scheduler.stop(join=self.settings.feed_deadline + 2)
        self._halted.set()
        if self._keeper.is_alive():
            self._keeper.join(timeout=5)
        held = [f for f in self.followers.values() if not f.lost]
        with ThreadPoolExecutor(self.settings.feed_readers) as pool:  # one mirror per database, at once
            list(pool.map(lambda f: f.mirror(force=True), held))
        for db in list(self.followers):
            self._drop(db, release=True, mirror=False)
        self.state.leave(self.id)
        log.info("dispatcher %s stopped", self.id, extra={"dispatcher": self.id})
