"""How long each conflicted document has been waiting: the first time it was seen conflicted.

CouchDB keeps no time on revisions, so the age of a conflict is what couchfarm itself saw: a sorted
set per database (``keys.CONFLICT_SEEN``), doc id -> the first time a listing found it conflicted.
One script adds the new ids (keeping the first time of known ones) and, after a complete listing,
drops the ids that are no longer conflicted, so the set never holds more than the database's
current conflicts (and never more than ``MAX_TRACKED``).
"""

from __future__ import annotations

import time
from typing import Any

from couchfarm import keys
from couchfarm.keys import Keyspace

MAX_TRACKED = 100_000

_SEEN = """
local key, now, complete = KEYS[1], ARGV[1], ARGV[2] == '1'
if complete then
  local wanted = {}
  for i = 4, #ARGV do wanted[ARGV[i]] = true end
  for _, member in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    if not wanted[member] then redis.call('ZREM', key, member) end
  end
end
local out = {}
for i = 4, #ARGV do
  redis.call('ZADD', key, 'NX', now, ARGV[i])
end
redis.call('ZREMRANGEBYRANK', key, tonumber(ARGV[3]), -1)
for i = 4, #ARGV do out[#out + 1] = redis.call('ZSCORE', key, ARGV[i]) or '' end
return out
"""


class ConflictAges:
    """The store; ``redis`` is an injected client created with ``decode_responses=True``."""

    def __init__(self, redis: Any, farm: str, clock: Any = time.time) -> None:
        self.redis = redis
        self.ks = Keyspace(farm)
        self.clock = clock
        self._seen = redis.register_script(_SEEN)

    def seen(
        self, db: str, doc_ids: list[str], *, complete: bool, now: float | None = None
    ) -> dict[str, float]:
        """Record that ``doc_ids`` are conflicted now; the first time each was seen conflicted.

        ``complete``: the list is every conflicted document of ``db``, so the others are forgotten.
        """
        now = self.clock() if now is None else now
        args = [repr(now), "1" if complete else "0", MAX_TRACKED, *doc_ids]
        scores = self._seen(keys=[self.ks(keys.CONFLICT_SEEN, db=db)], args=args)
        return {d: float(s) for d, s in zip(doc_ids, scores, strict=True) if s not in ("", None)}
