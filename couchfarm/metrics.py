"""Prometheus metrics of every couchfarm process.

Worker processes of the prefork pool share one view through prometheus_client's multiprocess mode:
the worker entry point sets ``PROMETHEUS_MULTIPROC_DIR`` before anything imports this module, and
its ``/metrics`` endpoint aggregates every child's files. The dispatcher uses the default registry.
Every metric carries the ``farm`` label (set once per process, :data:`FARM`), so farms that share a
Prometheus stay apart. Label values are farm and database names, strategies and outcomes: never
document ids (unbounded) nor URLs.
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
    elif name == "gauges":
        LAG.labels(FARM[0], db).set(fields["lag"])
        OVERLAP.labels(FARM[0], db).set(fields["overlap"])
        DEAD_LETTERS.labels(FARM[0], db).set(fields.get("dead_letters", 0))
        cp = fields["checkpoint"]
        for which, at in (("read", cp.read_at), ("done", cp.done_at)):
            if at:
                CHECKPOINT_AGE.labels(FARM[0], db, which).set(max(0.0, time.time() - at))
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


def serve(port: int, multiprocess: bool = False) -> None:
    """Expose ``/metrics`` on ``port`` (0 picks a free one); aggregated across processes if asked."""
    if multiprocess:
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, addr="0.0.0.0", registry=registry)
    else:
        start_http_server(port, addr="0.0.0.0")
