"""Redis state of the farm: leases with fencing tokens, fenced checkpoints, pause switch, dispatchers.

Batches and the in-flight guard are in couchfarm/ledger.py. Every write that moves a database's feed
forward (checkpoints here; new batches, claiming and sending a batch there) is one Lua script that
first checks that the caller still owns the lease *and* that the fencing token it got at
acquisition is still current: a holder that was paused (GC, SIGSTOP) past its lease and resumed
cannot move anything, gets ``LeaseLost`` and steps down.

Checkpoints per database: ``read`` (the feed continues from here; every change before it is in a
batch) and ``done`` (every change before it is resolved or dead-lettered: the safe restart point).
``done`` moves over batches in feed order only, so it never passes a batch that is still open.
Seqs are stored as JSON and never compared: they only move by being replaced with a later one.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

from couchfarm import keys
from couchfarm.errors import LeaseLost
from couchfarm.keys import Keyspace
from couchfarm.settings import Settings

FENCE_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return redis.error_reply('LEASE_LOST')
end
"""
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_CHECKPOINT = (
    FENCE_LUA
    + """
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4], ARGV[3] .. '_at', ARGV[5], 'token', ARGV[2])
return 1
"""
)
_READ = (
    FENCE_LUA
    + """
local added = redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
if added == 0 then redis.call('INCR', KEYS[4]) end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -1001)
return added
"""
)


def call_fenced(script: Any, keys_: list[str], args: list[Any], db: str = "") -> Any:
    """Run a Lua script that starts with ``FENCE_LUA``; its refusal becomes ``LeaseLost``."""
    try:
        return script(keys=keys_, args=args)
    except Exception as exc:
        if "LEASE_LOST" in str(exc):
            raise LeaseLost(f"lease of {db} lost (fencing token no longer current)", db=db) from None
        raise


@dataclass(frozen=True)
class Lease:
    db: str
    owner: str
    token: int


@dataclass(frozen=True)
class Checkpoint:
    read: Any = None  #: the opaque seq to continue from (None: never read)
    done: Any = None  #: the safe restart point
    token: int = 0
    read_at: float = 0.0
    done_at: float = 0.0
    known: bool = False  #: whether Redis has a checkpoint for the database at all
    reset_token: int = -1  #: the fencing token a ``checkpoint reset`` moved to (-1: never reset)

    @classmethod
    def from_hash(cls, raw: dict[str, str]) -> Checkpoint:
        return cls(
            read=json.loads(raw["read"]) if raw.get("read") else None,
            done=json.loads(raw["done"]) if raw.get("done") else None,
            token=int(raw.get("token", 0)),
            read_at=float(raw.get("read_at", 0)),
            done_at=float(raw.get("done_at", 0)),
            known="read" in raw or "done" in raw,
            reset_token=int(raw.get("reset_token", -1)),
        )


class PauseMirror(Protocol):
    """The durable copy of the pause switch (couchfarm/durable.py)."""

    def set_paused(self, db: str, paused: bool) -> None: ...


def fence(ks: Keyspace, lease: Lease) -> tuple[list[str], list[Any]]:
    """The first keys and arguments of every script that starts with ``FENCE_LUA``."""
    return [ks(keys.LEASE, db=lease.db), ks(keys.FENCE, db=lease.db)], [lease.owner, str(lease.token)]


class FarmState:
    """All of one farm's Redis state; ``redis`` is injected (``decode_responses=True``)."""

    def __init__(
        self, redis: Any, farm: str, clock: Any = time.time, mirror: PauseMirror | None = None
    ) -> None:
        self.redis = redis
        self.farm = farm
        self.mirror = mirror
        self.ks = Keyspace(farm)
        self.clock = clock
        self._scripts = {name: redis.register_script(src) for name, src in _SCRIPTS.items()}

    def _run(self, name: str, keys_: list[str], args: list[Any], db: str = "") -> Any:
        return call_fenced(self._scripts[name], keys_, args, db)

    # -- leases ---------------------------------------------------------------------------------

    def acquire(self, db: str, owner: str, ttl: float) -> Lease | None:
        """Take the lease if nobody holds it; the fencing token grows with every acquisition.

        The stored owner is ``owner#nonce``, new at every acquisition: after Redis loses its data the
        token counter starts again at 1, and without the nonce a follower of the previous
        acquisition by the same process would pass the fence with the same (owner, token) pair.
        """
        value = f"{owner}#{uuid.uuid4().hex[:8]}"
        token = int(
            self._run(
                "acquire", [self.ks(keys.LEASE, db=db), self.ks(keys.FENCE, db=db)], [value, int(ttl * 1000)]
            )
        )
        if not token:
            return None
        self.redis.sadd(self.ks(keys.DATABASES), db)
        return Lease(db, value, token)

    def raise_token(self, lease: Lease, floor: int) -> Lease:
        """The same lease with a fencing token of at least ``floor`` (the token the database's
        ``_local`` mirror last recorded): after Redis lost writes (a FLUSHALL, a failover) the
        counter may have gone back, and a token number is never to be handed out twice."""
        keys_ = [self.ks(keys.LEASE, db=lease.db), self.ks(keys.FENCE, db=lease.db)]
        token = int(self._run("raise", keys_, [lease.owner, floor], lease.db))
        if not token:
            raise LeaseLost(f"lease of {lease.db} lost before its token was raised", db=lease.db)
        return Lease(lease.db, lease.owner, token)

    def acquire_many(self, dbs: list[str], owner: str, ttl: float, limit: int) -> list[Lease]:
        """Take up to ``limit`` of the free leases among ``dbs``, in one round trip."""
        if not dbs or limit <= 0:
            return []
        nonce = uuid.uuid4().hex[:8]
        lease_keys = [self.ks(keys.LEASE, db=db) for db in dbs]
        fence_keys = [self.ks(keys.FENCE, db=db) for db in dbs]
        args = [f"{owner}#{nonce}", int(ttl * 1000), limit, len(dbs)]
        got = self._scripts["acquire_many"](keys=[*lease_keys, *fence_keys], args=args)
        leases = [
            Lease(dbs[int(i) - 1], f"{owner}#{nonce}", int(token))
            for i, token in zip(got[::2], got[1::2], strict=True)
        ]
        if leases:
            self.redis.sadd(self.ks(keys.DATABASES), *[lease.db for lease in leases])
        return leases

    def renew_many(self, leases: list[Lease], ttl: float) -> set[str]:
        """Renew every lease in one round trip; the databases whose lease was still held."""
        if not leases:
            return set()
        keys_ = [self.ks(keys.LEASE, db=lease.db) for lease in leases]
        ok = self._scripts["renew_many"](
            keys=keys_, args=[int(ttl * 1000), *[lease.owner for lease in leases]]
        )
        return {lease.db for lease, renewed in zip(leases, ok, strict=True) if int(renewed)}

    # -- the change signal ----------------------------------------------------------------------

    def mark_dirty(self, dbs: list[str]) -> None:
        """These databases changed (``_db_updates`` or a moved ``update_seq``): their holder reads."""
        if dbs:
            self.redis.sadd(self.ks(keys.DIRTY), *dbs)

    def take_dirty(self, db: str) -> bool:
        """Consume ``db``'s mark before reading it (a change after this marks it again)."""
        return bool(self.redis.srem(self.ks(keys.DIRTY), db))

    def dirty_among(self, dbs: list[str]) -> list[str]:
        if not dbs:
            return []
        flags = self.redis.smismember(self.ks(keys.DIRTY), dbs)
        return [db for db, flag in zip(dbs, flags, strict=True) if flag]

    def db_updates_since(self) -> Any:
        raw = self.redis.get(self.ks(keys.DB_UPDATES))
        return json.loads(raw) if raw else None

    def set_db_updates_since(self, since: Any) -> None:
        self.redis.set(self.ks(keys.DB_UPDATES), json.dumps(since))

    def renew(self, lease: Lease, ttl: float) -> bool:
        return bool(self._run("renew", [self.ks(keys.LEASE, db=lease.db)], [lease.owner, int(ttl * 1000)]))

    def release(self, lease: Lease) -> bool:
        return bool(self._run("release", [self.ks(keys.LEASE, db=lease.db)], [lease.owner]))

    def holder(self, db: str) -> tuple[str | None, int, int]:
        """(owner, ms left, current fencing token) of a database's lease."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.ks(keys.LEASE, db=db))
        pipe.pttl(self.ks(keys.LEASE, db=db))
        pipe.get(self.ks(keys.FENCE, db=db))
        owner, ttl, token = pipe.execute()
        return owner, max(int(ttl), 0), int(token or 0)

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self, db: str) -> Checkpoint:
        return Checkpoint.from_hash(self.redis.hgetall(self.ks(keys.CHECKPOINT, db=db)))

    def write_checkpoint(self, lease: Lease, field: str, seq: Any) -> None:
        """Fenced write of ``read`` or ``done``; ``LeaseLost`` when the lease moved on."""
        assert field in ("read", "done")
        k, a = fence(self.ks, lease)
        self._run(
            "checkpoint",
            [*k, self.ks(keys.CHECKPOINT, db=lease.db)],
            [*a, field, json.dumps(seq), self.clock()],
            lease.db,
        )

    def reset_checkpoint(self, db: str, *, fence_mirror: bool = True) -> int:
        """Forget a database's checkpoints and open batches (an operator's ``checkpoint reset``);
        returns the new fencing token.

        In one script the lease is dropped and the fencing token moves on, so a dispatcher following
        the database right now cannot write its in-memory position back: its next write is refused
        and it steps down. With ``fence_mirror`` the new token is kept as ``reset_token``: a
        ``_local`` mirror written under an older token (by that dispatcher, even after the reset)
        is not resumed from, so the rescan the operator asked for happens.
        """
        keys_ = [
            self.ks(keys.LEASE, db=db),
            self.ks(keys.FENCE, db=db),
            self.ks(keys.CHECKPOINT, db=db),
            self.ks(keys.BATCHES, db=db),
            self.ks(keys.INFLIGHT, db=db),
        ]
        args = [self.ks(keys.BATCH, db=db, batch=""), "1" if fence_mirror else ""]
        return int(self._scripts["reset"](keys=keys_, args=args))

    # -- overlap and discovery ------------------------------------------------------------------

    def record_read(self, lease: Lease, since: Any) -> bool:
        """Remember that the feed was read from ``since``; False (and the overlap counter +1) if it
        had been read from there before. Fenced: a stale holder's reads are not counted."""
        k, a = fence(self.ks, lease)
        keys_ = [*k, self.ks(keys.READS, db=lease.db), self.ks(keys.OVERLAP, db=lease.db)]
        return bool(self._run("read", keys_, [*a, json.dumps(since), self.clock()], lease.db))

    def set_lag(self, db: str, lag: int) -> None:
        self.redis.set(self.ks(keys.LAG, db=db), lag, ex=86400)

    def lag(self, db: str) -> int | None:
        value = self.redis.get(self.ks(keys.LAG, db=db))
        return int(value) if value is not None else None

    def overlap(self, db: str) -> int:
        return int(self.redis.get(self.ks(keys.OVERLAP, db=db)) or 0)

    def pause(self, db: str, *, durable: bool = True) -> None:
        """Stop automatic resolution of ``db``: its follower stops reading (batches in flight finish),
        so conflicts stay for people and are picked up from the same checkpoint on resume. The
        durable copy is written first, so a Redis that loses its data does not un-pause it."""
        if durable and self.mirror is not None:
            self.mirror.set_paused(db, True)
        self.redis.sadd(self.ks(keys.PAUSED), db)

    def unpause(self, db: str) -> None:
        """Undo ``pause``: the follower reads again from where it stopped."""
        self.redis.srem(self.ks(keys.PAUSED), db)
        if self.mirror is not None:
            self.mirror.set_paused(db, False)

    def is_paused(self, db: str) -> bool:
        """Whether the pause set holds ``db`` (``pause``); :func:`paused` adds the settings' rule."""
        return bool(self.redis.sismember(self.ks(keys.PAUSED), db))

    def forget(self, db: str) -> None:
        """Drop a deleted database from the set ``status`` reports (its checkpoints and its dirty
        mark go with it)."""
        self.redis.srem(self.ks(keys.DATABASES), db)
        self.redis.srem(self.ks(keys.DIRTY), db)
        self.reset_checkpoint(db, fence_mirror=False)

    def databases(self) -> list[str]:
        return sorted(self.redis.smembers(self.ks(keys.DATABASES)))

    def heartbeat(self, dispatcher: str) -> None:
        self.redis.zadd(self.ks(keys.DISPATCHERS), {dispatcher: self.clock()})

    def live_dispatchers(self, within: float) -> list[str]:
        now = self.clock()
        self.redis.zremrangebyscore(self.ks(keys.DISPATCHERS), "-inf", now - 10 * within)
        return sorted(self.redis.zrangebyscore(self.ks(keys.DISPATCHERS), now - within, "+inf"))

    def leave(self, dispatcher: str) -> None:
        self.redis.zrem(self.ks(keys.DISPATCHERS), dispatcher)

    def memory(self) -> tuple[int, int] | None:
        """``used_memory`` and ``maxmemory`` (0: no limit) of this Redis, from ``INFO memory``; None
        when Redis refuses INFO (an ACL without it) but answers a PING. Raises when it cannot be
        reached."""
        try:
            info = self.redis.info("memory")
        except Exception:
            self.redis.ping()
            return None
        return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))


_RESET = """
redis.call('DEL', KEYS[1])
local token = redis.call('INCR', KEYS[2])
for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do redis.call('DEL', ARGV[1] .. id) end
redis.call('DEL', KEYS[3], KEYS[4], KEYS[5])
if ARGV[2] ~= '' then redis.call('HSET', KEYS[3], 'reset_token', token) end
return token
"""

_RAISE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local token = tonumber(redis.call('GET', KEYS[2]) or '0')
if token < tonumber(ARGV[2]) then
  token = tonumber(ARGV[2])
  redis.call('SET', KEYS[2], token)
end
return token
"""

_ACQUIRE_MANY = """
local n, got, out = tonumber(ARGV[4]), 0, {}
for i = 1, n do
  if got >= tonumber(ARGV[3]) then break end
  if redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    got = got + 1
    table.insert(out, i)
    table.insert(out, redis.call('INCR', KEYS[n + i]))
  end
end
return out
"""
_RENEW_MANY = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    out[i] = redis.call('PEXPIRE', KEYS[i], ARGV[1])
  else
    out[i] = 0
  end
end
return out
"""

_SCRIPTS = {
    "acquire": _ACQUIRE,
    "renew": _RENEW,
    "release": _RELEASE,
    "checkpoint": _CHECKPOINT,
    "read": _READ,
    "reset": _RESET,
    "raise": _RAISE,
    "acquire_many": _ACQUIRE_MANY,
    "renew_many": _RENEW_MANY,
}


def paused(settings: Settings, db: str, in_pause_set: bool) -> bool:
    """Whether automatic resolution of ``db`` is off, the one rule for the follower, ``status`` and the
    UI: the farm's pause set holds it (``conflicts pause``: ``in_pause_set``, from
    :meth:`FarmState.is_paused` or a round's snapshot) or its database rule says ``paused: true``."""
    rule = settings.rule_for(db)
    return in_pause_set or (rule is not None and rule.paused)
