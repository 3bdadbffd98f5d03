"""Every Redis key couchfarm uses, one line each with its type and its bound (TTL, trim or size).

Every key starts with the farm's name (``{farm}``, the ``farm`` setting: by default derived from
the CouchDB server's uuid), so farms of different clusters can share one Redis and never touch each
other's state. ``{db}`` is the database name, ``{id}`` a dead-letter id (a digest of db and doc id),
``{batch}`` a batch id. Each line names what keeps the key from growing without end; a test
resolves 10,000 documents and checks Redis memory against the figure in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "couchfarm:{farm}:"

# Dead letters (couchfarm/deadletters.py): bounded by the documents people have not replayed or purged
DLQ_ENTRY = PREFIX + "dlq:entry:{id}"  #: hash of the entry's fields; no TTL (leaves only by replay or purge)
DLQ_INDEX = PREFIX + "dlq:index"  #: zset id -> last failure time (unix s); one member per entry
DLQ_BY_DB = PREFIX + "dlq:db:{db}"  #: zset id -> last failure time, per database; one member per entry
DLQ_EVENTS = PREFIX + "dlq:count"  #: string counter of dead-letter writes ever made; one integer

# Leases and checkpoints (couchfarm/state.py): a few keys per followed database
LEASE = PREFIX + "lease:{db}"  #: string owner id; TTL = lease_ttl (SET NX PX, renewed by the owner)
FENCE = PREFIX + "fence:{db}"  #: string counter, +1 per acquisition (the fencing token); one integer
CHECKPOINT = PREFIX + "checkpoint:{db}"  #: hash {read, done (JSON seqs), token, read_at, done_at}; 5 fields
DATABASES = PREFIX + "databases"  #: set of database names followed (for status); dropped when deleted
DISPATCHERS = PREFIX + "dispatchers"  #: zset dispatcher id -> last heartbeat (unix s); pruned each round
READS = PREFIX + "reads:{db}"  #: zset JSON since -> time, the since values already read; trimmed to 1,000
OVERLAP = PREFIX + "overlap:{db}"  #: string counter of since ranges read twice (0 normally); one integer
LAG = PREFIX + "lag:{db}"  #: string, changes behind ``done`` as last measured by the holder; TTL 1 day
PAUSED = PREFIX + "paused"  #: set of databases whose automatic resolution is paused; one member per db
DIRTY = (
    PREFIX + "dirty"
)  #: set of databases that changed since their holder last read them; one member per db
DB_UPDATES = PREFIX + "db-updates"  #: string JSON seq of the server's _db_updates feed read so far; one value

# Batches (couchfarm/ledger.py): bounded by max_queued_batches per database, each deleted once
# ``done`` passes it
BATCH = PREFIX + "batch:{db}:{batch}"  #: hash: the batch's life (see couchfarm/ledger.py); deleted by done
BATCHES = PREFIX + "batches:{db}"  #: zset batch id -> ordinal (open batches in feed order); open ones only
ORDINAL = PREFIX + "ordinal:{db}"  #: string counter of batch ordinals; one integer
INFLIGHT = PREFIX + "inflight:{db}"  #: hash doc id -> batch id holding it; documents of open batches only
WRITTEN = PREFIX + "written:{db}:{doc}"  #: string JSON list of a document's leaves after a worker settled it;
#: TTL 1 h (only needed until the follower has read past the farm's own write)

# "Why conflicts happen" (couchfarm/insights.py): bounded by insights_window / insights_bucket buckets
# per database, each with at most insights.MAX_LABELS labels
INSIGHTS = PREFIX + "insights:{db}:{bucket}"  #: hash label -> count for one time bucket (start, unix s);
#: TTL = insights_window + one bucket; at most MAX_LABELS + 5 fields (the rest is counted as "(other)")
INSIGHTS_SEEN = PREFIX + "insights-seen:{db}"  #: zset conflict digest -> time, so a retry is not
#: counted twice; members older than 1 h removed and at most 10,000 kept at each write; TTL 1 h

# Conflict ages (couchfarm/ages.py), written by `couchfarm ui` when it lists a database's conflicts
CONFLICT_SEEN = PREFIX + "conflict-seen:{db}"  #: zset doc id -> first time seen conflicted; pruned to
#: the conflicted documents of the last complete listing; at most 100,000 members (the oldest kept)

# Durable copies (couchfarm/durable.py)
RESTORED = PREFIX + "restored"  #: string time the durable copies were last restored into Redis; one value


@dataclass(frozen=True)
class Keyspace:
    """The keys of one farm: ``ks(keys.LEASE, db="orders")``."""

    farm: str

    def __call__(self, template: str, **fields: object) -> str:
        return template.format(farm=self.farm, **fields)
