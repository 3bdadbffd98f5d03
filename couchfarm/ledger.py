"""The batch ledger in Redis: one hash per open batch records its whole life, and every move is one Lua
script, so a crash between two steps leaves a state that someone moves on (docs/architecture.md
draws it).

::

    waiting --claim--> queued --start--> started --complete--> done --advance--> (deleted)
                         ^                  |  \\
                         |                  |   --retry_later--> retrying --start--> started
                         +-----resend-------+                        |
                         +-----resend--------------------------------+

* The **lease holder** (couchfarm/dispatch/follower.py) creates and claims batches, publishes them
  (``sent_at`` is empty between a claim and a successful publish), re-sends a batch whose worker went
  silent or whose message was lost (``resend``), and moves ``done`` over completed batches. Each of
  these writes is fenced by the lease (``FENCE_LUA``).
* The **runner**, a worker delivery (couchfarm/batch.py), ``start``\\ s the batch under its task id,
  renews ``beat_at`` while it works, and ends it with ``retry_later`` or ``complete``. Those writes are
  fenced by the runner id: after a re-send made another delivery the runner, a delivery that was
  only slow cannot complete or retry the batch any more.

Fields of ``couchfarm:batch:{db}:{id}``: ``ordinal``, ``docs`` (JSON, the whole batch), ``end_seq``,
``revs`` (leaves as the feed showed them), ``correlation_id``, ``traceparent``, ``created_at``,
``status``, ``pending`` (JSON, the documents the next delivery runs), ``attempt`` (retries so far),
``sends`` and ``sent_at`` (publishes; empty ``sent_at``: claimed but not published), ``due_at``
(earliest start), ``runner``, ``beat_at``, ``deliveries`` (starts), ``careful`` (the last delivery
died: run in small chunks, suspects one at a time), ``strike:{doc}`` (deaths while that document
was being resolved).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from couchfarm import keys
from couchfarm.keys import Keyspace
from couchfarm.settings import Settings
from couchfarm.state import FENCE_LUA, Checkpoint, Lease, call_fenced, fence

_CLAIM_LUA = """
local function claim(bkey, inflight, docs_json, batch_id, now)
  local docs = cjson.decode(docs_json)
  if #docs == 0 then
    redis.call('HSET', bkey, 'status', 'done', 'done_at', now, 'pending', '[]')
    return 2
  end
  for _, doc in ipairs(docs) do
    if redis.call('HEXISTS', inflight, doc) == 1 then return 0 end
  end
  for _, doc in ipairs(docs) do redis.call('HSET', inflight, doc, batch_id) end
  redis.call('HSET', bkey, 'status', 'queued', 'pending', docs_json, 'sent_at', '', 'due_at', now,
    'attempt', 0)
  return 1
end
"""
_CREATE = (
    FENCE_LUA
    + _CLAIM_LUA
    + """
local ordinal = redis.call('INCR', KEYS[4])
redis.call('HSET', KEYS[3], 'ordinal', ordinal, 'docs', ARGV[3], 'end_seq', ARGV[4], 'status', 'waiting',
  'correlation_id', ARGV[5], 'created_at', ARGV[6], 'traceparent', ARGV[8], 'revs', ARGV[9], 'sends', 0,
  'deliveries', 0)
redis.call('ZADD', KEYS[5], ordinal, ARGV[7])
return claim(KEYS[3], KEYS[6], ARGV[3], ARGV[7], ARGV[6])
"""
)
_CLAIM = (
    FENCE_LUA
    + _CLAIM_LUA
    + """
if redis.call('HGET', KEYS[3], 'status') ~= 'waiting' then return 0 end
local docs = ARGV[5]
if docs == '' then docs = redis.call('HGET', KEYS[3], 'docs') end
redis.call('HSET', KEYS[3], 'docs', docs)
return claim(KEYS[3], KEYS[4], docs, ARGV[3], ARGV[4])
"""
)
_SENT = (
    FENCE_LUA
    + """
local status = redis.call('HGET', KEYS[3], 'status')
if not status then return 0 end
redis.call('HINCRBY', KEYS[3], 'sends', 1)
if (status == 'queued' or status == 'retrying') and redis.call('HGET', KEYS[3], 'sent_at') == '' then
  redis.call('HSET', KEYS[3], 'sent_at', ARGV[3], 'due_at', ARGV[3])
end
return 1
"""
)
_RESEND = (
    FENCE_LUA
    + """
local status = redis.call('HGET', KEYS[3], 'status')
if status ~= ARGV[3] then return 0 end
if status == 'started' and redis.call('HGET', KEYS[3], 'beat_at') ~= ARGV[4] then return 0 end
if status ~= 'started' and redis.call('HGET', KEYS[3], 'sent_at') ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[3], 'status', 'queued', 'sent_at', '', 'runner', '')
if status == 'started' then redis.call('HSET', KEYS[3], 'careful', '1') end
return 1
"""
)
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status or status == 'done' or status == 'waiting' then return {'gone'} end
local attempt = tonumber(redis.call('HGET', KEYS[1], 'attempt') or '0')
if tonumber(ARGV[2]) < attempt then return {'stale'} end
local careful = redis.call('HGET', KEYS[1], 'careful') or ''
if status == 'started' then
  local beat = tonumber(redis.call('HGET', KEYS[1], 'beat_at') or '0')
  if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[1] and tonumber(ARGV[3]) - beat < tonumber(ARGV[4]) then
    return {'busy'}
  end
  careful = '1'
end
redis.call('HSET', KEYS[1], 'status', 'started', 'runner', ARGV[1], 'beat_at', ARGV[3], 'careful', careful)
redis.call('HINCRBY', KEYS[1], 'deliveries', 1)
return {'run', redis.call('HGET', KEYS[1], 'pending') or '[]', tostring(attempt), careful,
  redis.call('HGET', KEYS[1], 'revs') or '{}'}
"""
_BEAT = """
if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'status') ~= 'started' then
  return 0
end
redis.call('HSET', KEYS[1], 'beat_at', ARGV[2])
return 1
"""
_RETRY = """
if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'status') ~= 'started' then
  return 0
end
redis.call('HSET', KEYS[1], 'status', 'retrying', 'pending', ARGV[3], 'attempt', ARGV[4], 'due_at', ARGV[5],
  'sent_at', ARGV[2], 'runner', '', 'careful', ARGV[6])
return 1
"""
_COMPLETE = """
if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[1] or redis.call('HGET', KEYS[1], 'status') ~= 'started' then
  return 0
end
for _, doc in ipairs(cjson.decode(redis.call('HGET', KEYS[1], 'docs'))) do
  if redis.call('HGET', KEYS[2], doc) == ARGV[2] then redis.call('HDEL', KEYS[2], doc) end
end
redis.call('HSET', KEYS[1], 'status', 'done', 'done_at', ARGV[3], 'pending', '[]', 'runner', '')
redis.call('SADD', KEYS[3], ARGV[4])  -- the holder's next round moves done and claims what waited
return 1
"""
_STRIKE = """
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then return out end
for i = 1, #ARGV do out[i] = redis.call('HINCRBY', KEYS[1], 'strike:' .. ARGV[i], 1) end
return out
"""
_ADVANCE = (
    FENCE_LUA
    + """
local moved = false
while true do
  local first = redis.call('ZRANGE', KEYS[3], 0, 0)
  if #first == 0 then break end
  local bkey = ARGV[3] .. first[1]
  if redis.call('HGET', bkey, 'status') ~= 'done' then break end  -- a missing record stops done too
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
_SNAPSHOT = """
local out = {redis.call('HGETALL', KEYS[1]), redis.call('SISMEMBER', KEYS[2], ARGV[1]),
  redis.call('GET', KEYS[3]) or '0', redis.call('ZCARD', KEYS[4])}
for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  table.insert(out, id)
  table.insert(out, redis.call('HGETALL', ARGV[2] .. id))
end
return out
"""
_SCRIPTS = {
    "create": _CREATE,
    "claim": _CLAIM,
    "sent": _SENT,
    "resend": _RESEND,
    "start": _START,
    "beat": _BEAT,
    "retry": _RETRY,
    "complete": _COMPLETE,
    "strike": _STRIKE,
    "advance": _ADVANCE,
    "snapshot": _SNAPSHOT,
}


@dataclass(frozen=True)
class Timing:
    """The clocks of a batch's life, all derived from ``lease_ttl`` so that anything a process death
    stalls is moved on within two lease lifetimes."""

    beat_interval: float  #: a running delivery renews ``beat_at`` this often
    beat_timeout: float  #: a delivery silent for longer is dead: the lease holder re-sends its batch
    lost_after: float  #: a published batch not started this long after it was due, with an empty queue
    waiting_bound: float  #: a published batch not started this long after it was due, whatever the queue

    @classmethod
    def from_settings(cls, settings: Settings) -> Timing:
        ttl = settings.lease_ttl
        return cls(
            beat_interval=ttl / 3,
            beat_timeout=ttl,
            lost_after=ttl,
            waiting_bound=max(10 * ttl, settings.task_time_limit + settings.retry_backoff_max),
        )


@dataclass(frozen=True)
class Batch:
    db: str
    id: str
    ordinal: int
    docs: list[str]  #: every document of the batch (held in flight until it completes)
    status: str  #: waiting | queued | started | retrying | done
    correlation_id: str
    end_seq: Any = None
    traceparent: str = ""  #: W3C trace context started by the dispatcher for this batch
    revs: dict[str, list[str]] = field(default_factory=dict)  #: each document's leaves as the feed showed
    pending: list[str] = field(default_factory=list)  #: what the next delivery runs
    attempt: int = 0
    sends: int = 0
    sent_at: float | None = None  #: None: claimed but not published yet
    due_at: float = 0.0
    runner: str = ""
    beat_at: float = 0.0
    deliveries: int = 0
    careful: bool = False

    @classmethod
    def from_hash(cls, db: str, batch_id: str, raw: dict[str, str]) -> Batch:
        return cls(
            db=db,
            id=batch_id,
            ordinal=int(raw.get("ordinal", 0)),
            docs=json.loads(raw.get("docs", "[]")),
            status=raw.get("status", "waiting"),
            correlation_id=raw.get("correlation_id", ""),
            end_seq=json.loads(raw["end_seq"]) if raw.get("end_seq") else None,
            traceparent=raw.get("traceparent", ""),
            revs=json.loads(raw.get("revs") or "{}"),
            pending=json.loads(raw.get("pending") or "[]"),
            attempt=int(raw.get("attempt") or 0),
            sends=int(raw.get("sends") or 0),
            sent_at=float(raw["sent_at"]) if raw.get("sent_at") else None,
            due_at=float(raw.get("due_at") or 0),
            runner=raw.get("runner", ""),
            beat_at=float(raw.get("beat_at") or 0),
            deliveries=int(raw.get("deliveries") or 0),
            careful=bool(raw.get("careful")),
        )

    @property
    def mark(self) -> str:
        """The field value a re-send must still find (so a beat or a start in between wins)."""
        return repr(self.beat_at) if self.status == "started" else repr(self.sent_at)


@dataclass(frozen=True)
class Snapshot:
    """What a follower needs to know of its database, read in one round trip per round."""

    checkpoint: Checkpoint
    paused: bool
    overlap: int
    dead_letters: int
    batches: list[Batch]  #: open batches in feed order


@dataclass(frozen=True)
class Start:
    """A delivery's ``start``: ``verdict`` ``run`` with what to run, or why this copy does nothing."""

    verdict: str  #: run | gone (done or unknown) | stale (an earlier attempt) | busy (another live runner)
    pending: list[str] = field(default_factory=list)
    attempt: int = 0
    careful: bool = False
    revs: dict[str, list[str]] = field(default_factory=dict)  #: the leaves the feed showed, per document


class Ledger:
    """The batch records of every database; ``redis`` is injected (``decode_responses=True``)."""

    def __init__(self, redis: Any, farm: str, clock: Any = time.time) -> None:
        self.redis = redis
        self.farm = farm
        self.ks = Keyspace(farm)
        self.clock = clock
        self._scripts = {name: redis.register_script(src) for name, src in _SCRIPTS.items()}

    # -- the lease holder's moves (fenced by the lease) -----------------------------------------

    def create(
        self,
        lease: Lease,
        docs: list[str],
        end_seq: Any,
        correlation_id: str,
        traceparent: str = "",
        revs: dict[str, list[str]] | None = None,
    ) -> tuple[str, bool]:
        """Record a batch in feed order and claim it at once when none of its documents is in
        flight; (batch id, whether it is claimed and must be published)."""
        batch_id = uuid.uuid4().hex[:12]
        k, a = fence(self.ks, lease)
        db = lease.db
        seq = json.dumps(end_seq) if end_seq is not None else ""
        claimed = call_fenced(
            self._scripts["create"],
            [
                *k,
                self._batch(db, batch_id),
                self.ks(keys.ORDINAL, db=db),
                self.ks(keys.BATCHES, db=db),
                self._inflight(db),
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
        return batch_id, claimed == 1

    def claim(self, lease: Lease, batch_id: str, docs: list[str] | None = None) -> bool:
        """Mark a waiting batch queued and its documents in flight, unless one of them already is;
        ``docs`` first narrows the batch (an empty list completes it without sending). True when
        the batch is to be published."""
        k, a = fence(self.ks, lease)
        narrowed = json.dumps(docs) if docs is not None else ""
        keys_ = [*k, self._batch(lease.db, batch_id), self._inflight(lease.db)]
        return bool(
            call_fenced(self._scripts["claim"], keys_, [*a, batch_id, self.clock(), narrowed], lease.db) == 1
        )

    def sent(self, lease: Lease, batch_id: str) -> None:
        """A publish of the batch succeeded."""
        k, a = fence(self.ks, lease)
        call_fenced(
            self._scripts["sent"], [*k, self._batch(lease.db, batch_id)], [*a, self.clock()], lease.db
        )

    def resend(self, lease: Lease, batch: Batch) -> bool:
        """Put a batch whose runner went silent, or whose message was lost, back to queued-unpublished;
        False when it moved meanwhile (a beat, a start). A silent runner makes the next delivery
        careful: one document at a time, with strikes."""
        k, a = fence(self.ks, lease)
        args = [*a, batch.status, batch.mark]
        return bool(
            call_fenced(self._scripts["resend"], [*k, self._batch(lease.db, batch.id)], args, lease.db)
        )

    def advance_done(self, lease: Lease) -> bool:
        """Move ``done`` over the completed batches at the head of the feed order; fenced."""
        k, a = fence(self.ks, lease)
        db = lease.db
        keys_ = [*k, self.ks(keys.BATCHES, db=db), self.ks(keys.CHECKPOINT, db=db)]
        return bool(call_fenced(self._scripts["advance"], keys_, [*a, self._batch(db, ""), self.clock()], db))

    # -- a runner's moves (fenced by the runner id) ---------------------------------------------

    def start(self, db: str, batch_id: str, runner: str, attempt: int, beat_timeout: float) -> Start:
        raw = self._scripts["start"](
            keys=[self._batch(db, batch_id)], args=[runner, attempt, repr(self.clock()), beat_timeout]
        )
        if raw[0] != "run":
            return Start(str(raw[0]))
        return Start("run", json.loads(raw[1]), int(raw[2]), bool(raw[3]), json.loads(raw[4]))

    def beat(self, db: str, batch_id: str, runner: str) -> bool:
        return bool(
            self._scripts["beat"](keys=[self._batch(db, batch_id)], args=[runner, repr(self.clock())])
        )

    def retry_later(
        self, db: str, batch_id: str, runner: str, docs: list[str], attempt: int, delay: float, careful: bool
    ) -> bool:
        now = self.clock()
        args = [runner, repr(now), json.dumps(docs), attempt, repr(now + delay), "1" if careful else ""]
        return bool(self._scripts["retry"](keys=[self._batch(db, batch_id)], args=args))

    def complete(self, db: str, batch_id: str, runner: str) -> bool:
        """Every document of the batch is settled: release them and mark the batch done."""
        keys_ = [self._batch(db, batch_id), self._inflight(db), self.ks(keys.DIRTY)]
        return bool(self._scripts["complete"](keys=keys_, args=[runner, batch_id, self.clock(), db]))

    def strike(self, db: str, batch_id: str, docs: list[str]) -> dict[str, int]:
        """Count one more delivery that started on each of ``docs`` (cleared by ``spare`` when it
        returns); the counts (0 when the batch is gone)."""
        got = self._scripts["strike"](keys=[self._batch(db, batch_id)], args=docs)
        return {doc: int(n) for doc, n in zip(docs, got, strict=False)} | {d: 0 for d in docs[len(got) :]}

    def strikes(self, db: str, batch_id: str, docs: list[str]) -> dict[str, int]:
        """The strikes each of ``docs`` has now."""
        if not docs:
            return {}
        got = self.redis.hmget(self._batch(db, batch_id), [f"strike:{d}" for d in docs])
        return {doc: int(n or 0) for doc, n in zip(docs, got, strict=True)}

    def spare(self, db: str, batch_id: str, docs: list[str]) -> None:
        if docs:
            self.redis.hdel(self._batch(db, batch_id), *[f"strike:{d}" for d in docs])

    # -- reading --------------------------------------------------------------------------------

    def snapshot(self, db: str) -> Snapshot:
        keys_ = [
            self.ks(keys.CHECKPOINT, db=db),
            self.ks(keys.PAUSED),
            self.ks(keys.OVERLAP, db=db),
            self.ks(keys.DLQ_BY_DB, db=db),
            self.ks(keys.BATCHES, db=db),
        ]
        raw = self._scripts["snapshot"](keys=keys_, args=[db, self._batch(db, "")])
        batches = [
            Batch.from_hash(db, raw[i], _pairs(raw[i + 1])) for i in range(4, len(raw), 2) if raw[i + 1]
        ]
        return Snapshot(Checkpoint.from_hash(_pairs(raw[0])), bool(raw[1]), int(raw[2]), int(raw[3]), batches)

    def batches(self, db: str) -> list[Batch]:
        """Open batches in feed order."""
        return self.snapshot(db).batches

    def batch(self, db: str, batch_id: str) -> Batch | None:
        raw = self.redis.hgetall(self._batch(db, batch_id))
        return Batch.from_hash(db, batch_id, raw) if raw else None

    def inflight(self, db: str) -> dict[str, str]:
        return dict(self.redis.hgetall(self._inflight(db)))

    def _batch(self, db: str, batch_id: str) -> str:
        return self.ks(keys.BATCH, db=db, batch=batch_id)

    def _inflight(self, db: str) -> str:
        return self.ks(keys.INFLIGHT, db=db)

    # -- the farm's own writes ------------------------------------------------------------------

    def remember_leaves(self, db: str, leaves: dict[str, list[str]], ttl: int = 3600) -> None:
        """Record the leaf revs a worker left each document with (see ``known_leaves``)."""
        if not leaves:
            return
        pipe = self.redis.pipeline(transaction=False)
        for doc_id, revs in leaves.items():
            pipe.set(self.ks(keys.WRITTEN, db=db, doc=doc_id), json.dumps(sorted(revs)), ex=ttl)
        pipe.execute()

    def known_leaves(self, db: str, doc_ids: list[str]) -> dict[str, list[str]]:
        """The remembered leaf revs of these documents: a feed row listing exactly these leaves is a
        worker's own write coming back, with nothing new to resolve."""
        if not doc_ids:
            return {}
        values = self.redis.mget([self.ks(keys.WRITTEN, db=db, doc=d) for d in doc_ids])
        return {d: json.loads(v) for d, v in zip(doc_ids, values, strict=True) if v}


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
