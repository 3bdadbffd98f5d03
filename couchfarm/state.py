"""Redis state of the farm: leases with fencing tokens, fenced checkpoints, batches and the in-flight guard.

Every write that moves a database's feed forward (checkpoints, new batches, claiming a batch for a
worker) is one Lua script that first checks that the caller still owns the lease *and* that the
fencing token it got at acquisition is still current: a holder that was paused (GC, SIGSTOP) past its
lease and resumed cannot move anything, gets ``LeaseLost`` and steps down.

Checkpoints per database: ``read`` (the feed continues from here; every change before it is in a
batch) and ``done`` (every change before it is resolved or dead-lettered: the safe restart point).
``done`` moves over batches in feed order only, so it never passes a batch that is still open.
Seqs are stored as JSON and never compared: they only move by being replaced with a later one.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from couchfarm import keys
from couchfarm.errors import LeaseLost

_FENCE = """
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
    _FENCE
    + """
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4], ARGV[3] .. '_at', ARGV[5], 'token', ARGV[2])
return 1
"""
)
_CREATE = (
    _FENCE
    + """
local ordinal = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], 'ordinal', ordinal, 'docs', ARGV[3], 'end_seq', ARGV[4], 'status', 'waiting',
  'correlation_id', ARGV[5], 'created_at', ARGV[6], 'traceparent', ARGV[8], 'revs', ARGV[9])
redis.call('ZADD', KEYS[5], ordinal, ARGV[7])
return ordinal
"""
)
_CLAIM = (
    _FENCE
    + """
if redis.call('HGET', KEYS[3], 'status') ~= 'waiting' then return 0 end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[3], 'docs', ARGV[5]) end
local docs = cjson.decode(redis.call('HGET', KEYS[3], 'docs'))
if #docs == 0 then
  redis.call('HSET', KEYS[3], 'status', 'done', 'done_at', ARGV[4])
  return 2
end
for _, doc in ipairs(docs) do
  if redis.call('HEXISTS', KEYS[4], doc) == 1 then return 0 end
end
for _, doc in ipairs(docs) do redis.call('HSET', KEYS[4], doc, ARGV[3]) end
redis.call('HSET', KEYS[3], 'status', 'queued', 'enqueued_at', ARGV[4], 'touched_at', ARGV[4])
return 1
"""
)
_COMPLETE = """
local raw = redis.call('HGET', KEYS[1], 'docs')
if not raw then return 0 end
for _, doc in ipairs(cjson.decode(raw)) do
  if redis.call('HGET', KEYS[2], doc) == ARGV[1] then redis.call('HDEL', KEYS[2], doc) end
end
redis.call('HSET', KEYS[1], 'status', 'done', 'done_at', ARGV[2])
return 1
"""
_ADVANCE = (
    _FENCE
    + """
local moved = false
while true do
  local first = redis.call('ZRANGE', KEYS[3], 0, 0)
  if #first == 0 then break end
  local bkey = ARGV[3] .. first[1]
  local status = redis.call('HGET', bkey, 'status')
  if status ~= 'done' then break end  -- a missing record (evicted?) stops done: never skip unseen work
  local seq = redis.call('HGET', bkey, 'end_seq')
  if seq and seq ~= '' then
    redis.call('HSET', KEYS[4], 'done', seq, 'done_at', ARGV[4], 'token', ARGV[2])
    moved = true
  end
  redis.call('ZREM', KEYS[3], first[1])
  redis.call('DEL', bkey)
end
if redis.call('ZCARD', KEYS[3]) == 0 then
  local read = redis.call('HGET', KEYS[4], 'read')
  if read and read ~= redis.call('HGET', KEYS[4], 'done') then
    redis.call('HSET', KEYS[4], 'done', read, 'done_at', ARGV[4], 'token', ARGV[2])
    moved = true
  end
end
if moved then return 1 end
return 0
"""
)
_READ = (
    _FENCE
    + """
local added = redis.call('ZADD', KEYS[3], 'NX', ARGV[4], ARGV[3])
if added == 0 then redis.call('INCR', KEYS[4]) end
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -10001)
return added
"""
)
_TOUCH = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'touched_at', ARGV[1]) return 1 end
return 0
"""
_NO_SEQ = ""


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


@dataclass(frozen=True)
class Batch:
    db: str
    id: str
    ordinal: int
    docs: list[str]
    status: str  #: waiting (not sent: a document is in flight elsewhere) | queued | done
    correlation_id: str
    end_seq: Any = None
    touched_at: float = 0.0
    traceparent: str = ""  #: W3C trace context started by the dispatcher for this batch
    revs: dict[str, list[str]] = field(
        default_factory=dict
    )  #: each document's leaves as the feed showed them


class FarmState:
    """All of one farm's Redis state; ``redis`` is injected (``decode_responses=True``)."""

    def __init__(self, redis: Any, clock: Any = time.time) -> None:
        self.redis = redis
        self.clock = clock
        self._scripts = {name: redis.register_script(src) for name, src in _SCRIPTS.items()}

    def _run(self, name: str, keys_: list[str], args: list[Any], db: str = "") -> Any:
        try:
            return self._scripts[name](keys=keys_, args=args)
        except Exception as exc:
            if "LEASE_LOST" in str(exc):
                raise LeaseLost(f"lease of {db} lost (fencing token no longer current)", db=db) from None
            raise

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
                "acquire", [keys.LEASE.format(db=db), keys.FENCE.format(db=db)], [value, int(ttl * 1000)]
            )
        )
        if not token:
            return None
        self.redis.sadd(keys.DATABASES, db)
        return Lease(db, value, token)

    def renew(self, lease: Lease, ttl: float) -> bool:
        return bool(self._run("renew", [keys.LEASE.format(db=lease.db)], [lease.owner, int(ttl * 1000)]))

    def release(self, lease: Lease) -> bool:
        return bool(self._run("release", [keys.LEASE.format(db=lease.db)], [lease.owner]))

    def holder(self, db: str) -> tuple[str | None, int, int]:
        """(owner, ms left, current fencing token) of a database's lease."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.LEASE.format(db=db))
        pipe.pttl(keys.LEASE.format(db=db))
        pipe.get(keys.FENCE.format(db=db))
        owner, ttl, token = pipe.execute()
        return owner, max(int(ttl), 0), int(token or 0)

    def _fence(self, lease: Lease) -> tuple[list[str], list[Any]]:
        return [keys.LEASE.format(db=lease.db), keys.FENCE.format(db=lease.db)], [
            lease.owner,
            str(lease.token),
        ]

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self, db: str) -> Checkpoint:
        raw = self.redis.hgetall(keys.CHECKPOINT.format(db=db))
        if not raw:
            return Checkpoint()
        return Checkpoint(
            read=json.loads(raw["read"]) if raw.get("read") else None,
            done=json.loads(raw["done"]) if raw.get("done") else None,
            token=int(raw.get("token", 0)),
            read_at=float(raw.get("read_at", 0)),
            done_at=float(raw.get("done_at", 0)),
            known=True,
        )

    def write_checkpoint(self, lease: Lease, field: str, seq: Any) -> None:
        """Fenced write of ``read`` or ``done``; ``LeaseLost`` when the lease moved on."""
        assert field in ("read", "done")
        k, a = self._fence(lease)
        self._run(
            "checkpoint",
            [*k, keys.CHECKPOINT.format(db=lease.db)],
            [*a, field, json.dumps(seq), self.clock()],
            lease.db,
        )

    def reset_checkpoint(self, db: str) -> None:
        """Forget a database's checkpoints and open batches (an operator's ``checkpoint reset``).

        In one transaction the lease is dropped and the fencing token moves on, so a dispatcher
        following the database right now cannot write its in-memory position back: its next write
        is refused, it steps down, and the next holder starts from the mirror (or from the start).
        """
        batches = [
            keys.BATCH.format(db=db, batch=b) for b in self.redis.zrange(keys.BATCHES.format(db=db), 0, -1)
        ]
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.LEASE.format(db=db))
        pipe.incr(keys.FENCE.format(db=db))
        pipe.delete(
            keys.CHECKPOINT.format(db=db), keys.BATCHES.format(db=db), keys.INFLIGHT.format(db=db), *batches
        )
        pipe.execute()

    # -- batches --------------------------------------------------------------------------------

    def create_batch(
        self,
        lease: Lease,
        docs: list[str],
        end_seq: Any,
        correlation_id: str,
        traceparent: str = "",
        revs: dict[str, list[str]] | None = None,
    ) -> str:
        """Record a batch (status waiting) in feed order; fenced."""
        batch_id = uuid.uuid4().hex[:12]
        k, a = self._fence(lease)
        db = lease.db
        seq = json.dumps(end_seq) if end_seq is not None else _NO_SEQ
        self._run(
            "create",
            [
                *k,
                keys.BATCH.format(db=db, batch=batch_id),
                keys.ORDINAL.format(db=db),
                keys.BATCHES.format(db=db),
            ],
            [
                *a,
                json.dumps(docs),
                seq,
                correlation_id,
                self.clock(),
                batch_id,
                traceparent,
                json.dumps(revs or {}),
            ],
            db,
        )
        return batch_id

    def claim(self, lease: Lease, batch_id: str, docs: list[str] | None = None) -> bool:
        """Mark a waiting batch queued and its documents in flight, unless one of them already is;
        ``docs`` first narrows the batch (an empty list completes it without sending). True when
        the batch is to be sent."""
        k, a = self._fence(lease)
        db = lease.db
        keys_ = [*k, keys.BATCH.format(db=db, batch=batch_id), keys.INFLIGHT.format(db=db)]
        narrowed = json.dumps(docs) if docs is not None else ""
        return bool(self._run("claim", keys_, [*a, batch_id, self.clock(), narrowed], db) == 1)

    def complete(self, db: str, batch_id: str) -> bool:
        """Called by the task when every document of the batch is resolved or dead-lettered."""
        keys_ = [keys.BATCH.format(db=db, batch=batch_id), keys.INFLIGHT.format(db=db)]
        return bool(self._run("complete", keys_, [batch_id, self.clock()]))

    def touch(self, db: str, batch_id: str) -> None:
        """Mark a batch as being worked on (atomically: never recreates a batch already advanced over)."""
        self._run("touch", [keys.BATCH.format(db=db, batch=batch_id)], [self.clock()])

    def clear_delivery(self, batch_id: str, attempt: int) -> None:
        """Forget a delivery count once the work it guarded finished without killing its process."""
        self.redis.delete(keys.DELIVERIES.format(batch=batch_id, attempt=attempt))

    def advance_done(self, lease: Lease) -> bool:
        """Move ``done`` over the completed batches at the head of the feed order; fenced."""
        k, a = self._fence(lease)
        db = lease.db
        prefix = keys.BATCH.format(db=db, batch="")
        keys_ = [*k, keys.BATCHES.format(db=db), keys.CHECKPOINT.format(db=db)]
        return bool(self._run("advance", keys_, [*a, prefix, self.clock()], db))

    def batches(self, db: str) -> list[Batch]:
        """Open batches in feed order."""
        out = []
        for batch_id in self.redis.zrange(keys.BATCHES.format(db=db), 0, -1):
            raw = self.redis.hgetall(keys.BATCH.format(db=db, batch=batch_id))
            if raw:
                out.append(_batch(db, batch_id, raw))
        return out

    def batch(self, db: str, batch_id: str) -> Batch | None:
        raw = self.redis.hgetall(keys.BATCH.format(db=db, batch=batch_id))
        return _batch(db, batch_id, raw) if raw else None

    def inflight(self, db: str) -> dict[str, str]:
        return dict(self.redis.hgetall(keys.INFLIGHT.format(db=db)))

    def delivery(self, batch_id: str, attempt: int) -> int:
        """Count one more delivery of a batch attempt (Celery does not count worker-lost redeliveries)."""
        key = keys.DELIVERIES.format(batch=batch_id, attempt=attempt)
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, 86400)
        return int(pipe.execute()[0])

    # -- overlap and discovery ------------------------------------------------------------------

    def record_read(self, lease: Lease, since: Any) -> bool:
        """Remember that the feed was read from ``since``; False (and the overlap counter +1) if it
        had been read from there before. Fenced: a stale holder's reads are not counted."""
        k, a = self._fence(lease)
        keys_ = [*k, keys.READS.format(db=lease.db), keys.OVERLAP.format(db=lease.db)]
        return bool(self._run("read", keys_, [*a, json.dumps(since), self.clock()], lease.db))

    def set_lag(self, db: str, lag: int) -> None:
        self.redis.set(keys.LAG.format(db=db), lag, ex=86400)

    def lag(self, db: str) -> int | None:
        value = self.redis.get(keys.LAG.format(db=db))
        return int(value) if value is not None else None

    def overlap(self, db: str) -> int:
        return int(self.redis.get(keys.OVERLAP.format(db=db)) or 0)

    def remember_leaves(self, db: str, leaves: dict[str, list[str]], ttl: int = 3600) -> None:
        """Record the leaf revs a worker left each document with (see ``known_leaves``)."""
        if not leaves:
            return
        pipe = self.redis.pipeline(transaction=False)
        for doc_id, revs in leaves.items():
            pipe.set(keys.WRITTEN.format(db=db, doc=doc_id), json.dumps(sorted(revs)), ex=ttl)
        pipe.execute()

    def known_leaves(self, db: str, doc_ids: list[str]) -> dict[str, list[str]]:
        """The remembered leaf revs of these documents: a feed row listing exactly these leaves is a
        worker's own write coming back, with nothing new to resolve."""
        if not doc_ids:
            return {}
        values = self.redis.mget([keys.WRITTEN.format(db=db, doc=d) for d in doc_ids])
        return {d: json.loads(v) for d, v in zip(doc_ids, values, strict=True) if v}

    def pause(self, db: str) -> None:
        """Stop automatic resolution of ``db``: its follower stops reading (batches in flight finish),
        so conflicts stay for people and are picked up from the same checkpoint on resume."""
        self.redis.sadd(keys.PAUSED, db)

    def resume(self, db: str) -> None:
        self.redis.srem(keys.PAUSED, db)

    def is_paused(self, db: str) -> bool:
        return bool(self.redis.sismember(keys.PAUSED, db))

    def forget(self, db: str) -> None:
        """Drop a deleted database from the set ``status`` reports (its checkpoints go with it)."""
        self.redis.srem(keys.DATABASES, db)
        self.reset_checkpoint(db)

    def databases(self) -> list[str]:
        return sorted(self.redis.smembers(keys.DATABASES))

    def heartbeat(self, dispatcher: str) -> None:
        self.redis.zadd(keys.DISPATCHERS, {dispatcher: self.clock()})

    def live_dispatchers(self, within: float) -> list[str]:
        now = self.clock()
        self.redis.zremrangebyscore(keys.DISPATCHERS, "-inf", now - 10 * within)
        return sorted(self.redis.zrangebyscore(keys.DISPATCHERS, now - within, "+inf"))

    def leave(self, dispatcher: str) -> None:
        self.redis.zrem(keys.DISPATCHERS, dispatcher)


def _batch(db: str, batch_id: str, raw: dict[str, str]) -> Batch:
    return Batch(
        db=db,
        id=batch_id,
        ordinal=int(raw.get("ordinal", 0)),
        docs=json.loads(raw.get("docs", "[]")),
        status=raw.get("status", "waiting"),
        correlation_id=raw.get("correlation_id", ""),
        end_seq=json.loads(raw["end_seq"]) if raw.get("end_seq") else None,
        touched_at=float(raw.get("touched_at", 0) or 0),
        traceparent=raw.get("traceparent", ""),
        revs=json.loads(raw.get("revs") or "{}"),
    )


_SCRIPTS = {
    "acquire": _ACQUIRE,
    "renew": _RENEW,
    "release": _RELEASE,
    "checkpoint": _CHECKPOINT,
    "create": _CREATE,
    "claim": _CLAIM,
    "complete": _COMPLETE,
    "advance": _ADVANCE,
    "read": _READ,
    "touch": _TOUCH,
}
