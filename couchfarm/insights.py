"""Why conflicts happen: what each conflict looks like, counted per database over a bounded window.

Pure part: :func:`observe` turns a :class:`ConflictSet` into an :class:`Observation`: the document's
type (the value or id prefix of the type rule of its database that routes it, else its
``insights_type_field``, else its id prefix), the top-level fields whose values differ between the
live leaves, and who wrote the leaves (the ``writer_field`` of each live leaf, when it has one).

Store: :class:`InsightStore` keeps one Redis hash per database and time bucket (``keys.INSIGHTS``),
label -> count, expiring after the window. Labels are ``t:`` type, ``f:`` field, ``w:`` writer;
``n`` counts conflicts and ``resolved`` documents the farm resolved. A hash holds at most
``MAX_LABELS`` labels: the rest are counted as ``t:(other)`` and so on, so a body with ten thousand
keys cannot grow Redis. A conflict is counted once however often it is retried or redelivered
(``keys.INSIGHTS_SEEN`` remembers its digest for an hour).

:class:`InsightRecorder` is the engine's ``on_conflict`` hook: it never raises, because a failed
count must not fail a resolution.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from couchfarm import keys
from couchfarm.canonical import digest, same
from couchfarm.keys import Keyspace
from couchfarm.models import ConflictSet, Outcome
from couchfarm.resolution import DocResult
from couchfarm.resolvers.router import matches
from couchfarm.settings import DatabaseRule

log = logging.getLogger("couchfarm.insights")
MAX_LABELS = 64  #: labels per bucket hash before the rest go to "(other)"
MAX_FIELDS = 20  #: differing fields counted per conflict
LABEL_CHARS = 64  #: labels are cut to this many characters
SEEN_SECONDS = 3600  #: how long a counted conflict is remembered (not counted again)
DIMENSIONS = {"t": "type", "f": "field", "w": "writer"}
OTHER = "(other)"
NONE = "(none)"
_PREFIX = re.compile(r"^(_design/|_local/|[^:/\-_.]{1,32}[:/\-_.])")

_RECORD = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2] - ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -10001)
redis.call('EXPIRE', KEYS[1], ARGV[3])
for i = 6, #ARGV do
  local label = ARGV[i]
  if redis.call('HEXISTS', KEYS[2], label) == 0 and redis.call('HLEN', KEYS[2]) >= tonumber(ARGV[5]) then
    label = string.sub(label, 1, 2) .. '(other)'
  end
  redis.call('HINCRBY', KEYS[2], label, 1)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Observation:
    """What one conflict says about why it happened."""

    db: str
    doc_id: str
    digest: str  #: of the document id and its live revs: the same conflict seen again is not counted
    doc_type: str
    fields: tuple[str, ...]
    writers: tuple[str, ...]

    def labels(self) -> list[str]:
        return (
            ["n", f"t:{self.doc_type}"]
            + [f"f:{name}" for name in self.fields]
            + [f"w:{name}" for name in self.writers]
        )


def observe(
    conflict: ConflictSet,
    rule: DatabaseRule | None = None,
    *,
    type_field: str = "type",
    writer_field: str | None = None,
) -> Observation:
    """The observation of one conflict (pure)."""
    live = conflict.live
    return Observation(
        conflict.db,
        conflict.doc_id,
        digest([conflict.doc_id, sorted(leaf.rev for leaf in live)], 16),
        doc_type(conflict, rule, type_field),
        differing_fields(conflict)[:MAX_FIELDS],
        writers(conflict, writer_field),
    )


def doc_type(conflict: ConflictSet, rule: DatabaseRule | None, type_field: str) -> str:
    """The routing type rule's value or id prefix; else the winner's ``type_field``; else the id prefix."""
    for type_rule in rule.types if rule else []:
        if matches(type_rule, conflict):
            return label(type_rule.value if type_rule.value is not None else type_rule.id_prefix)
    winner = conflict.winner
    value = winner.body.get(type_field) if winner is not None else None
    if isinstance(value, str | int | float | bool) and str(value):
        return label(value)
    prefix = _PREFIX.match(conflict.doc_id)
    return label(prefix.group(1)) if prefix else NONE


def differing_fields(conflict: ConflictSet) -> tuple[str, ...]:
    """Top-level fields whose values differ between the live leaves (absent counts as a value)."""
    bodies = [leaf.body for leaf in conflict.live]
    if len(bodies) < 2:
        return ()
    names = sorted({name for body in bodies for name in body})
    missing = object()

    def differs(name: str) -> bool:
        values = [body.get(name, missing) for body in bodies]
        if any(v is missing for v in values):
            return not all(v is missing for v in values)
        return any(not same(values[0], v) for v in values[1:])

    return tuple(label(name) for name in names if differs(name))


def writers(conflict: ConflictSet, writer_field: str | None) -> tuple[str, ...]:
    """Each distinct writer named by a live leaf's ``writer_field`` (sorted), once per conflict."""
    if not writer_field:
        return ()
    found = {
        label(value)
        for leaf in conflict.live
        if isinstance(value := leaf.body.get(writer_field), str | int | float | bool) and str(value)
    }
    return tuple(sorted(found))


def label(value: Any) -> str:
    return str(value)[:LABEL_CHARS]


@dataclass(frozen=True)
class Bucket:
    """Counts of one time bucket: ``start`` (unix s) and label -> count."""

    start: float
    counts: dict[str, int] = field(default_factory=dict)

    def of(self, dimension: str) -> dict[str, int]:
        """The counts of one dimension (``t``, ``f`` or ``w``) by label."""
        prefix = f"{dimension}:"
        return {k[len(prefix) :]: v for k, v in self.counts.items() if k.startswith(prefix)}


class InsightStore:
    """The Redis store; ``redis`` is an injected client created with ``decode_responses=True``."""

    def __init__(
        self, redis: Any, farm: str, *, window: float, bucket: float, clock: Any = time.time
    ) -> None:
        self.redis = redis
        self.ks = Keyspace(farm)
        self.window = window
        self.bucket = bucket
        self.clock = clock
        self._record = redis.register_script(_RECORD)

    def _start(self, now: float) -> int:
        return int(now // self.bucket * self.bucket)

    def _key(self, db: str, start: int) -> str:
        return self.ks(keys.INSIGHTS, db=db, bucket=start)

    def record(self, obs: Observation, now: float | None = None) -> bool:
        """Count one conflict in the current bucket; False when it was counted already."""
        return bool(self._record(*self._call(obs, self.clock() if now is None else now)))

    def record_many(self, observations: list[Observation], now: float | None = None) -> None:
        """Count several conflicts in one round trip (a worker's batch), each as ``record`` would."""
        if not observations:
            return
        now = self.clock() if now is None else now
        pipe = self.redis.pipeline(transaction=False)
        for obs in observations:
            self._record(*self._call(obs, now), client=pipe)
        pipe.execute()

    def _call(self, obs: Observation, now: float) -> tuple[list[str], list[Any]]:
        keys_ = [self.ks(keys.INSIGHTS_SEEN, db=obs.db), self._key(obs.db, self._start(now))]
        ttl = math.ceil(self.window + self.bucket)
        return keys_, [obs.digest, repr(now), SEEN_SECONDS, ttl, MAX_LABELS, *obs.labels()]

    def resolved(self, db: str, count: int = 1, now: float | None = None) -> None:
        """Count documents the farm (or a person, through the UI) resolved."""
        if count <= 0:
            return
        key = self._key(db, self._start(self.clock() if now is None else now))
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(key, "resolved", count)
        pipe.expire(key, math.ceil(self.window + self.bucket))
        pipe.execute()

    def record_results(self, results: Iterable[DocResult], now: float | None = None) -> None:
        """Count the RESOLVED results, per database."""
        per_db = Counter(r.db for r in results if r.outcome is Outcome.RESOLVED)
        for db, count in per_db.items():
            self.resolved(db, count, now)

    def series(self, db: str, seconds: float | None = None, now: float | None = None) -> list[Bucket]:
        """Every bucket of the last ``seconds`` (default: the window), oldest first; empty ones too."""
        now = self.clock() if now is None else now
        last = self._start(now)
        count = max(1, math.ceil(min(seconds or self.window, self.window) / self.bucket))
        starts = [last - i * int(self.bucket) for i in range(count - 1, -1, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for start in starts:
            pipe.hgetall(self._key(db, start))
        return [
            Bucket(float(start), {k: int(v) for k, v in raw.items()})
            for start, raw in zip(starts, pipe.execute(), strict=True)
        ]

    def total(self, db: str, name: str, seconds: float, now: float | None = None) -> int:
        """The sum of one counter (``n``, ``resolved``) over the buckets of the last ``seconds``."""
        return sum(b.counts.get(name, 0) for b in self.series(db, seconds, now))


class InsightRecorder:
    """The engine's ``on_conflict`` hook: observes and counts a conflict; never raises."""

    def __init__(
        self,
        store: InsightStore,
        rule_for: Callable[[str], DatabaseRule | None],
        *,
        type_field: str = "type",
        writer_field: str | None = None,
    ) -> None:
        self.store = store
        self.rule_for = rule_for
        self.type_field = type_field
        self.writer_field = writer_field
        self._pending: list[Observation] | None = None  #: kept while ``batched``

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Within: conflicts are observed as they come and counted at the end in one round trip
        (a worker's batch of hundreds costs one Redis request, not one each); never raises."""
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            try:
                self.store.record_many(pending)
            except Exception as exc:  # a count is not worth a failed resolution
                log.warning("%d conflicts not counted: %s", len(pending), exc)

    def __call__(self, conflict: ConflictSet) -> None:
        try:
            obs = observe(
                conflict,
                self.rule_for(conflict.db),
                type_field=self.type_field,
                writer_field=self.writer_field,
            )
            if self._pending is not None:
                self._pending.append(obs)
            else:
                self.store.record(obs)
        except Exception as exc:  # a count is not worth a failed resolution
            log.warning("conflict of %s/%s not counted: %s", conflict.db, conflict.doc_id, exc)

    def results(self, results: Iterable[DocResult]) -> None:
        """Count resolved documents; never raises."""
        try:
            self.store.record_results(list(results))
        except Exception as exc:
            log.warning("resolutions not counted: %s", exc)
