"""The durable dead-letter store (modelled on rq's failed-job registry).

One entry per document (its id is a digest of db and doc id), so a document that fails again
updates its entry instead of adding a second one. Each write is one Lua script: it records the
failure, bumps ``attempts`` and indexes the entry by time globally and per database. A write made
again by the same delivery (the same batch attempt run again after a crash before it ended)
changes nothing, so a crash never duplicates an entry nor counts an attempt twice. Entries leave the
store only by ``remove`` (after a successful replay) or ``purge``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from couchfarm import keys
from couchfarm.failures import Failure
from couchfarm.keys import Keyspace
from couchfarm.redact import redact

_ADD = """
local last = redis.call('HGET', KEYS[1], 'delivery')
if ARGV[3] ~= '' and last == ARGV[3] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'first_failure', ARGV[2], 'attempts', 0)
end
redis.call('HINCRBY', KEYS[1], 'attempts', ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HSET', KEYS[1], 'last_failure', ARGV[2], 'delivery', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('INCR', KEYS[4])
return 1
"""


_REMOVE = """
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'last_failure') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""


def entry_id(db: str, doc_id: str) -> str:
    return hashlib.sha1(f"{db}\x00{doc_id}".encode()).hexdigest()[:16]


@dataclass
class DeadLetter:
    """Everything needed to understand and replay one failed document."""

    db: str
    doc_id: str
    revs: list[str]
    strategy: str
    error: Failure  #: why (couchfarm/failures.py); a string read back is parsed
    reason: str  #: validation errors, the server's reason, the exception text
    attempts: int = 1
    correlation_id: str = ""
    task_id: str = ""
    delivery: str = ""  #: which delivery failed (batch and attempt): a rerun of it is not a new failure
    traceparent: str = ""
    first_failure: float = 0.0
    last_failure: float = 0.0
    id: str = field(default="")

    def __post_init__(self) -> None:
        self.id = self.id or entry_id(self.db, self.doc_id)
        self.error = Failure.parse(self.error)
        self.reason = redact(self.reason)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "error": self.error.value}


class DeadLetterSink(Protocol):
    def add(self, entry: DeadLetter) -> bool: ...


class MemoryDeadLetters:
    """For runs without Redis (``couchfarm resolve``): entries are reported, not stored."""

    def __init__(self) -> None:
        self.entries: dict[str, DeadLetter] = {}

    def add(self, entry: DeadLetter) -> bool:
        entry.first_failure = entry.last_failure = entry.last_failure or time.time()
        self.entries[entry.id] = entry
        return True


class DeadLetterMirror(Protocol):
    """The durable copy of the store (couchfarm/durable.py): written before, deleted after Redis."""

    def keep_dead_letter(self, entry: DeadLetter) -> None: ...
    def drop_dead_letter(self, entry_id: str) -> None: ...


class DeadLetters:
    """The Redis store; ``redis`` is an injected client created with ``decode_responses=True``;
    ``mirror`` the durable copy (none in unit tests of the store itself)."""

    def __init__(self, redis: Any, farm: str, mirror: DeadLetterMirror | None = None) -> None:
        self.redis = redis
        self.farm = farm
        self.mirror = mirror
        self.ks = Keyspace(farm)
        self._add = redis.register_script(_ADD)
        self._remove = redis.register_script(_REMOVE)

    def add(self, entry: DeadLetter, now: float | None = None) -> bool:
        """Record a failure, durably first; False when the same delivery already recorded it (a
        rerun after a crash between the write and the end of the delivery)."""
        now = now or time.time()
        if self.mirror is not None:
            entry.first_failure = entry.first_failure or now
            entry.last_failure = now
            self.mirror.keep_dead_letter(entry)
        fields = {
            k: v
            for k, v in entry.as_json().items()
            if k not in ("attempts", "first_failure", "last_failure", "delivery")
        }
        flat: list[str] = []
        for k, v in fields.items():
            flat += [k, json.dumps(v) if isinstance(v, list) else str(v)]
        args = [entry.id, repr(now), entry.delivery, str(entry.attempts), *flat]
        key_list = [
            self.ks(keys.DLQ_ENTRY, id=entry.id),
            self.ks(keys.DLQ_INDEX),
            self.ks(keys.DLQ_BY_DB, db=entry.db),
            self.ks(keys.DLQ_EVENTS),
        ]
        return bool(self._add(keys=key_list, args=args))

    def get(self, entry_id: str) -> DeadLetter | None:
        raw = self.redis.hgetall(self.ks(keys.DLQ_ENTRY, id=entry_id))
        if not raw:
            return None
        return DeadLetter(
            db=raw["db"],
            doc_id=raw["doc_id"],
            revs=json.loads(raw.get("revs", "[]")),
            strategy=raw.get("strategy", ""),
            error=Failure.parse(raw.get("error", "")),
            reason=raw.get("reason", ""),
            attempts=int(raw.get("attempts", 0)),
            correlation_id=raw.get("correlation_id", ""),
            task_id=raw.get("task_id", ""),
            delivery=raw.get("delivery", ""),
            traceparent=raw.get("traceparent", ""),
            first_failure=float(raw.get("first_failure", 0)),
            last_failure=float(raw.get("last_failure", 0)),
            id=entry_id,
        )

    def list(
        self, db: str | None = None, since: float | None = None, limit: int = 10_000
    ) -> list[DeadLetter]:
        """Entries oldest first, for one database or all, failed at or after ``since``."""
        index = self.ks(keys.DLQ_BY_DB, db=db) if db else self.ks(keys.DLQ_INDEX)
        ids = self.redis.zrangebyscore(
            index, since if since is not None else "-inf", "+inf", start=0, num=limit
        )
        return [e for e in (self.get(i) for i in ids) if e is not None]

    def count(self, db: str | None = None) -> int:
        return int(self.redis.zcard(self.ks(keys.DLQ_BY_DB, db=db) if db else self.ks(keys.DLQ_INDEX)))

    def remove(self, entry_id: str, last_failure: float | None = None) -> bool:
        """Delete an entry; with ``last_failure``, only if it has not failed again since (a replay
        must not delete a newer failure that arrived while it ran)."""
        entry = self.get(entry_id)
        if entry is None:
            return False
        expected = repr(last_failure) if last_failure is not None else ""
        keys_ = [
            self.ks(keys.DLQ_ENTRY, id=entry_id),
            self.ks(keys.DLQ_INDEX),
            self.ks(keys.DLQ_BY_DB, db=entry.db),
        ]
        removed = bool(self._remove(keys=keys_, args=[entry_id, expected]))
        if removed and self.mirror is not None:
            self.mirror.drop_dead_letter(entry_id)
        return removed

    def put_back(self, entry: DeadLetter) -> None:
        """An entry as its durable copy has it, after Redis lost it (no failure counted)."""
        fields = {k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in entry.as_json().items()}
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.ks(keys.DLQ_ENTRY, id=entry.id), mapping=fields)
        pipe.zadd(self.ks(keys.DLQ_INDEX), {entry.id: entry.last_failure})
        pipe.zadd(self.ks(keys.DLQ_BY_DB, db=entry.db), {entry.id: entry.last_failure})
        pipe.execute()

    def purge_older_than(self, seconds: float, now: float | None = None) -> int:
        cutoff = (now or time.time()) - seconds
        ids = self.redis.zrangebyscore(self.ks(keys.DLQ_INDEX), "-inf", cutoff)
        return sum(self.remove(i) for i in ids)
