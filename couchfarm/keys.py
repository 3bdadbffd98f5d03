"""Every Redis key couchfarm uses, one line each with its type and TTL.

``{db}`` is the database name, ``{id}`` a dead-letter id (a digest of db and doc id).
"""

PREFIX = "couchfarm:"

# Dead letters (couchfarm/deadletters.py)
DLQ_ENTRY = PREFIX + "dlq:entry:{id}"  #: hash of the entry's fields; no TTL (leaves only by replay or purge)
DLQ_INDEX = PREFIX + "dlq:index"  #: zset id -> last failure time (unix s); no TTL
DLQ_BY_DB = PREFIX + "dlq:db:{db}"  #: zset id -> last failure time, per database; no TTL
DLQ_EVENTS = PREFIX + "dlq:count"  #: string counter of dead-letter writes ever made; no TTL
