"""Every Redis key couchfarm uses, one line each with its type and TTL.

``{db}`` is the database name, ``{id}`` a dead-letter id (a digest of db and doc id).
"""

PREFIX = "couchfarm:"

# Dead letters (couchfarm/deadletters.py)
DLQ_ENTRY = PREFIX + "dlq:entry:{id}"  #: hash of the entry's fields; no TTL (leaves only by replay or purge)
DLQ_INDEX = PREFIX + "dlq:index"  #: zset id -> last failure time (unix s); no TTL
DLQ_BY_DB = PREFIX + "dlq:db:{db}"  #: zset id -> last failure time, per database; no TTL
DLQ_EVENTS = PREFIX + "dlq:count"  #: string counter of dead-letter writes ever made; no TTL

# Leases and checkpoints (couchfarm/state.py)
LEASE = PREFIX + "lease:{db}"  #: string owner id; TTL = lease_ttl (SET NX PX, renewed by the owner)
FENCE = PREFIX + "fence:{db}"  #: string counter, +1 per acquisition (the fencing token); no TTL
CHECKPOINT = PREFIX + "checkpoint:{db}"  #: hash {read, done (JSON seqs), token, read_at, done_at}; no TTL
DATABASES = PREFIX + "databases"  #: set of database names ever followed (for status); no TTL
DISPATCHERS = PREFIX + "dispatchers"  #: zset dispatcher id -> last heartbeat (unix s); no TTL, pruned

# Batches and the in-flight guard (couchfarm/state.py)
BATCH = PREFIX + "batch:{db}:{batch}"  #: hash {ordinal, docs (JSON), end_seq (JSON), status, correlation_id,
#: enqueued_at, touched_at, traceparent, revs}; no TTL, deleted when the done checkpoint passes it
BATCHES = PREFIX + "batches:{db}"  #: zset batch id -> ordinal (open batches in feed order); no TTL
ORDINAL = PREFIX + "ordinal:{db}"  #: string counter of batch ordinals; no TTL
INFLIGHT = PREFIX + "inflight:{db}"  #: hash doc id -> batch id of the queued batch holding it; no TTL
DELIVERIES = PREFIX + "deliveries:{batch}:{attempt}"  #: string counter of deliveries; TTL 1 day
READS = PREFIX + "reads:{db}"  #: zset JSON since -> time, the since values already read; no TTL, trimmed
OVERLAP = PREFIX + "overlap:{db}"  #: string counter of since ranges read twice (0 normally); no TTL
LAG = PREFIX + "lag:{db}"  #: string, changes behind ``done`` as last measured by the holder; TTL 1 day
PAUSED = PREFIX + "paused"  #: set of databases whose automatic resolution is paused; no TTL
WRITTEN = (
    PREFIX + "written:{db}:{doc}"
)  #: string JSON list of a document's leaf revs after a worker settled it; TTL 1 h
