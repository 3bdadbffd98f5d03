"""Prometheus metrics of every couchfarm process.

Worker processes of the prefork pool share one view through prometheus_client's multiprocess mode:
the worker entry point sets ``PROMETHEUS_MULTIPROC_DIR`` before anything imports this module, and
its ``/metrics`` endpoint aggregates every child's files. The dispatcher uses the default registry.
Every metric carries the ``farm`` label (set once per process, :data:`FARM`), so farms that share a
Prometheus stay apart. Label values are farm and database names, strategies, outcomes and the
failures of couchfarm/failures.py: never document ids (unbounded) nor URLs.

The alert rules and the dashboard in deploy/ are built on these names and labels
(tests/prometheus/ checks them against a live farm): rename one and change them together.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

FARM = ["-"]  #: this process's farm (workers/logs.py ``tag_process`` sets it at start)
_GAUGE_MODE: Any = {"multiprocess_mode": "livemax"} if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else {}

CONFLICTS_DETECTED = Counter(
    "couchfarm_conflicts_detected", "Documents with more than one leaf handed to workers", ["farm", "db"]
)
DOCUMENTS = Counter(
    "couchfarm_documents",
    "Documents settled, by outcome (resolved, noop, retry, dead_lettered)",
    ["farm", "db", "strategy", "outcome"],
)
LATENCY = Histogram(
    "couchfarm_resolution_latency_seconds",
    "Time to resolve one batch attempt, per document",
    ["farm", "db"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LEAVES = Histogram(
    "couchfarm_leaves_per_conflict",
    "Live leaves of each conflicted document",
    ["farm", "db"],
    buckets=(2, 3, 4, 6, 10, 20, 50),
)
DEEP_CONFLICTS = Counter(
    "couchfarm_deep_conflicts", "Documents with more live leaves than the alert level", ["farm", "db"]
)
DELETIONS_UNDECIDED = Counter(
    "couchfarm_deletions_undecided",
    "Documents kept alive under tombstone_wins because the revision tree cannot tell whether a "
    "deletion was concurrent with the live edit",
    ["farm", "db"],
)
LAG = Gauge("couchfarm_lag", "Changes behind the done checkpoint", ["farm", "db"], **_GAUGE_MODE)
CHECKPOINT_AGE = Gauge(
    "couchfarm_checkpoint_age_seconds",
    "Seconds since a checkpoint last moved",
    ["farm", "db", "checkpoint"],
    **_GAUGE_MODE,
)
LEASES = Counter("couchfarm_lease_events", "Lease acquisitions and losses", ["farm", "db", "event"])
OVERLAP = Gauge(
    "couchfarm_overlap", "Since ranges read twice (0 in normal operation)", ["farm", "db"], **_GAUGE_MODE
)
DEAD_LETTERED = Counter(
    "couchfarm_dead_lettered",
    "Documents dead-lettered, by why (couchfarm/failures.py: a bounded list)",
    ["farm", "db", "error"],
)
DEAD_LETTERS = Gauge(
    "couchfarm_dead_letters", "Entries in the dead-letter store", ["farm", "db"], **_GAUGE_MODE
)
HTTP_ERRORS = Counter("couchfarm_http_errors", "CouchDB requests that failed, by kind", ["farm", "kind"])
BREAKER = Gauge(
    "couchfarm_breaker_state",
    "Circuit breaker per server: 0 closed, 1 half-open, 2 open",
    ["farm", "server"],
    **_GAUGE_MODE,
)
BATCHES_SENT = Counter("couchfarm_batches_sent", "Batch deliveries published to the workers", ["farm", "db"])
BATCHES_RESENT = Counter(
    "couchfarm_batches_resent",
    "Batches sent again because their delivery went silent or their message was lost, by the state seen",
    ["farm", "db", "status"],
)
PUBLISH_FAILURES = Counter(
    "couchfarm_publish_failures", "Publishes the broker refused or failed", ["farm", "db"]
)
BATCHES_OPEN = Gauge(
    "couchfarm_batches_open", "Open batches by state of their life", ["farm", "db", "status"], **_GAUGE_MODE
)
BATCH_STATES = ("waiting", "queued", "started", "retrying", "done")
RESENT_STATES = (
    "queued",
    "started",
    "retrying",
)  #: the states a batch is re-sent from (dispatch/recovery.py)
PAUSED = Gauge(
    "couchfarm_paused",
    "1 while the database is paused (left to people), else 0",
    ["farm", "db"],
    **_GAUGE_MODE,
)
UP = Gauge(
    "couchfarm_up",
    "1 while this process runs, by role (dispatcher, worker, replication_watch)",
    ["farm", "role"],
    **_GAUGE_MODE,
)
FOLLOWED = Gauge(
    "couchfarm_database_followed",
    "Per database this dispatcher discovered: 1 while it holds the lease and follows it, 0 otherwise",
    ["farm", "db"],
    **_GAUGE_MODE,
)
REDIS_UP = Gauge(
    "couchfarm_redis_up",
    "1 when the dispatcher's last probe of the state Redis succeeded, 0 when Redis could not be reached",
    ["farm"],
    **_GAUGE_MODE,
)
REDIS_MEMORY = Gauge(
    "couchfarm_redis_memory_used_bytes",
    "used_memory of the state Redis (INFO memory)",
    ["farm"],
    **_GAUGE_MODE,
)
REDIS_MAXMEMORY = Gauge(
    "couchfarm_redis_memory_max_bytes",
    "maxmemory of the state Redis (INFO memory); 0 when it has no limit",
    ["farm"],
    **_GAUGE_MODE,
)
DELIVERIES = Counter(
    "couchfarm_deliveries",
    "couchfarm.resolve_batch messages this worker took from its queue (copies that had nothing to do too)",
    ["farm"],
)
REPLICATION_EVENTS = Counter(
    "couchfarm_replication_events", "replication watch events", ["farm", "kind", "severity"]
)
REPLICATION_JOBS = Gauge(
    "couchfarm_replication_jobs",
    "Replications per node and state at the last poll of replication watch (unreachable: the node "
    "could not be read)",
    ["farm", "node", "state"],
    **_GAUGE_MODE,
)
RELAY_SWITCHES = Counter(
    "couchfarm_replication_relay_switches", "Relay fallback switches per link", ["farm", "link", "to"]
)
#: states every polled node reports, 0 when none of its replications is in it (an absent series and a
#: zero are then told apart, and rules compare with 0)
REPLICATION_STATES = (
    "initializing",
    "running",
    "pending",
    "crashing",
    "completed",
    "failed",
    "error",
    "unreachable",
)
#: per-database gauges of the follower: dropped from a dispatcher that no longer follows the database,
#: so that only the lease holder reports them
_FOLLOWER_GAUGES = (LAG, OVERLAP, DEAD_LETTERS, PAUSED)
_followed: set[str] = set()  #: databases with a FOLLOWED series in this process
_following_since: dict[str, float] = {}  #: database -> when this process first reported its gauges
_replications: set[tuple[str, str]] = set()  #: (node, state) series REPLICATION_JOBS has in this process


def http_kind(status: int | None) -> str | None:
    """The error kind of a request outcome, None for a success."""
    if status is None:
        return "connection"
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server"
    if status == 409:
        return "conflict"
    if status >= 400:
        return f"client_{status}"
    return None


def on_request(method: str, path: str, status: int | None, seconds: float) -> None:
    """The CouchDB transport's hook."""
    kind = http_kind(status)
    if kind is not None:
        HTTP_ERRORS.labels(FARM[0], kind).inc()


def on_event(name: str, **fields: Any) -> None:
    """The engine's and the dispatcher's events."""
    db = str(fields.get("db", ""))
    if name == "deep_conflict":
        DEEP_CONFLICTS.labels(FARM[0], db).inc()
    elif name == "deletion_undecided":
        DELETIONS_UNDECIDED.labels(FARM[0], db).inc()
    elif name in ("lease_acquired", "lease_lost"):
        LEASES.labels(FARM[0], db, name.removeprefix("lease_")).inc()
        if name == "lease_acquired":
            _counters_from_zero(db)
    elif name == "gauges":
        LAG.labels(FARM[0], db).set(fields["lag"])
        OVERLAP.labels(FARM[0], db).set(fields["overlap"])
        DEAD_LETTERS.labels(FARM[0], db).set(fields.get("dead_letters", 0))
        PAUSED.labels(FARM[0], db).set(1 if fields.get("paused") else 0)
        cp = fields["checkpoint"]
        # a checkpoint never written (a new database whose first batch is stuck) counts from when
        # this dispatcher began following the database: a lower bound, never an absent series
        since = _following_since.setdefault(db, time.time())
        for which, at in (("read", cp.read_at), ("done", cp.done_at)):
            CHECKPOINT_AGE.labels(FARM[0], db, which).set(max(0.0, time.time() - (at or since)))
        states = [b.status for b in fields.get("batches", [])]
        for status in BATCH_STATES:
            BATCHES_OPEN.labels(FARM[0], db, status).set(states.count(status))
    elif name == "batch_sent":
        BATCHES_SENT.labels(FARM[0], db).inc()
        if fields.get("first", True):
            CONFLICTS_DETECTED.labels(FARM[0], db).inc(int(fields.get("docs", 0)))
    elif name == "batch_resent":
        BATCHES_RESENT.labels(FARM[0], db, str(fields.get("status", ""))).inc()
    elif name == "publish_failed":
        PUBLISH_FAILURES.labels(FARM[0], db).inc()
    elif name == "followed":
        _set_followed(list(fields["dbs"]), set(fields["held"]))
    elif name == "redis":
        _set_redis(bool(fields["up"]), fields.get("memory"))


def started(role: str) -> None:
    """This process runs as ``role``; a worker's delivery counter starts at 0 (so a rate over it
    exists before its first delivery)."""
    UP.labels(FARM[0], role).set(1)
    if role == "worker":
        DELIVERIES.labels(FARM[0])


def _counters_from_zero(db: str) -> None:
    """The holder's per-database counters exist from 0 when it takes the lease: a counter series
    born at its first increment hides that increment from rate() and increase()."""
    for counter in (CONFLICTS_DETECTED, BATCHES_SENT, PUBLISH_FAILURES):
        counter.labels(FARM[0], db)
    for status in RESENT_STATES:
        BATCHES_RESENT.labels(FARM[0], db, status)
    LEASES.labels(FARM[0], db, "lost")


def _set_followed(dbs: list[str], held: set[str]) -> None:
    """1 for each discovered database this dispatcher follows, 0 for the others; a database no longer
    discovered loses its series, and one not followed loses the follower's gauges (the lease holder
    reports them)."""
    previous = set(_followed)
    for db in dbs:
        FOLLOWED.labels(FARM[0], db).set(1 if db in held else 0)
    for db in previous - set(dbs):
        FOLLOWED.remove(FARM[0], db)
    _followed.clear()
    _followed.update(dbs)
    for db in (previous | set(dbs)) - held:
        _following_since.pop(db, None)
        for gauge in _FOLLOWER_GAUGES:
            gauge.remove(FARM[0], db)
        for which in ("read", "done"):
            CHECKPOINT_AGE.remove(FARM[0], db, which)
        for status in BATCH_STATES:
            BATCHES_OPEN.remove(FARM[0], db, status)


def _set_redis(up: bool, memory: tuple[int, int] | None) -> None:
    REDIS_UP.labels(FARM[0]).set(1 if up else 0)
    if up and memory is not None:
        REDIS_MEMORY.labels(FARM[0]).set(memory[0])
        REDIS_MAXMEMORY.labels(FARM[0]).set(memory[1])


def replication_poll(nodes: list[str], states: list[tuple[str, str]]) -> None:
    """Replications per (node, state) after one poll of ``replication watch``; every node polled
    reports every known state (0 when none is in it)."""
    counts = dict.fromkeys(_replications, 0)  # a state seen before and gone now goes back to 0
    counts.update({(node, state): 0 for node in nodes for state in REPLICATION_STATES})
    for node, state in states:
        counts[(node, state)] = counts.get((node, state), 0) + 1
    for (node, state), n in counts.items():
        REPLICATION_JOBS.labels(FARM[0], node, state).set(n)
    _replications.update(counts)


def replication_event(kind: str, severity: str) -> None:
    """One event of ``replication watch`` (couchfarm/replication/watch.py)."""
    REPLICATION_EVENTS.labels(FARM[0], kind, severity).inc()


def serve(port: int, multiprocess: bool = False) -> None:
    """Expose ``/metrics`` on ``port`` (0 picks a free one); aggregated across processes if asked."""
    if multiprocess:
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, addr="0.0.0.0", registry=registry)
    else:
        start_http_server(port, addr="0.0.0.0")
