"""Follow manual sync jobs to their end: progress while they advance, then the final state.

A job's state comes from CouchDB's ``_scheduler/docs/_replicator/{id}`` (``running``, ``crashing``
with the Erlang reason, ``completed`` with its stats: 07a, 07c), else from the document's own fields;
on pouchdb-server from the document and a probe of both ends from couchfarm, since it records
nothing while it retries (``status.py`` reads all of these; this module only decides).

The wait ends when the job has completed (a success unless the target refused documents) or is
``failed``, ``error`` or ``crashing``. A crashing one-shot job is retried by CouchDB with a growing
backoff, and a crash over credentials must not be repeated (08c), so on CouchDB couchfarm deletes the
document, which cancels the job. pouchdb-server dies when a running job is deleted: there the job is
left to retry (it does until the target answers) and the reason says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from couchfarm.errors import Unavailable
from couchfarm.replication.api import delete_doc, get_doc, scheduler_doc
from couchfarm.replication.status import (
    STATS,
    Prober,
    ReplicationStatus,
    from_document,
    from_scheduler,
    seq_number,
)
from couchfarm.replication.sync import SyncJob

log = logging.getLogger("couchfarm.replication.sync")
ENDED = ("failed", "error", "crashing", "gone")
Progress = Callable[[SyncJob, ReplicationStatus], None]


@dataclass(frozen=True)
class SyncResult:
    """How one job ended (or where it stood when the wait timed out)."""

    job: SyncJob
    state: str
    ok: bool
    status: ReplicationStatus | None = None
    reason: str | None = None
    timed_out: bool = False

    def as_json(self) -> dict[str, Any]:
        stats = {k: getattr(self.status, k, None) for k in STATS}
        return {
            "doc_id": self.job.doc_id,
            "node": self.job.runner.label,
            "db": self.job.db,
            "source": self.job.source.label,
            "target": self.job.target.label,
            "state": self.state,
            "ok": self.ok,
            "timed_out": self.timed_out,
            "reason": self.reason,
            **stats,
        }

    def line(self) -> str:
        head = f"{self.state:<9} {self.job.doc_id} on {self.job.runner.label}"
        return f"{head}: {self.reason}" if self.reason else f"{head}: {describe(self.status)}"


def job_status(job: SyncJob, prober: Prober | None = None) -> ReplicationStatus:
    """Where ``job`` stands: the scheduler's entry on CouchDB, else the document (+ probes)."""
    client, node = job.runner.client, job.runner.label
    doc = get_doc(client, job.doc_id)
    if client.is_couchdb:
        entry = scheduler_doc(client, job.doc_id)
        if entry is not None:
            return from_scheduler(node, entry, doc, None)
    if doc is None:
        return ReplicationStatus(node, job.doc_id, "gone", reason="the document was deleted meanwhile")
    return from_document(node, doc, probe=prober or Prober(None, None))


def verdict(job: SyncJob, status: ReplicationStatus) -> SyncResult | None:
    """The result when ``status`` ends the wait; None while the job may still complete."""
    if status.state == "completed":
        refused = status.doc_write_failures or 0
        if refused:
            why = f"completed, but the target refused {refused} document(s) (validate function, permissions)"
            return SyncResult(job, "completed", False, status, why)
        return SyncResult(job, "completed", True, status)
    if status.state in ENDED:
        return SyncResult(job, status.state, False, status, status.reason or f"the job is {status.state}")
    return None


def follow(
    jobs: list[SyncJob],
    *,
    timeout: float,
    interval: float = 0.5,
    prober: Prober | None = None,
    on_progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[SyncResult]:
    """Poll every job until each has ended or ``timeout`` s have passed; one result per job."""
    deadline, done = clock() + timeout, dict[str, SyncResult]()
    last: dict[str, ReplicationStatus] = {}
    while True:
        for job in (j for j in jobs if j.doc_id not in done):
            status = _poll(job, prober)
            if status is None:
                continue
            if on_progress is not None and _moved(last.get(job.doc_id), status):
                on_progress(job, status)
            last[job.doc_id] = status
            result = verdict(job, status)
            if result is not None:
                done[job.doc_id] = result if result.ok else _stopped(result)
        if len(done) == len(jobs) or clock() >= deadline:
            break
        sleep(interval)
    return [done.get(j.doc_id) or _timed_out(j, last.get(j.doc_id), timeout) for j in jobs]


def _poll(job: SyncJob, prober: Prober | None) -> ReplicationStatus | None:
    try:
        return job_status(job, prober)
    except Unavailable as exc:  # the runner did not answer this time; 4xx are not retried
        log.debug("cannot read %s on %s: %s", job.doc_id, job.runner.label, exc)
        return None


def _moved(before: ReplicationStatus | None, after: ReplicationStatus) -> bool:
    fields = ("state", "docs_read", "docs_written", "checkpointed_seq", "source_seq")
    return before is None or any(getattr(before, f) != getattr(after, f) for f in fields)


def _stopped(result: SyncResult) -> SyncResult:
    """Cancel a crashing job (the others have stopped) where that is safe, and say what became of it."""
    job, client = result.job, result.job.runner.client
    if result.state != "crashing":
        return result
    if not client.is_couchdb:
        note = "pouchdb-server retries it until both ends answer (it cannot cancel a running job)"
    else:
        doc = get_doc(client, job.doc_id)
        if doc is None:
            return result
        delete_doc(client, job.doc_id, str(doc["_rev"]))
        note = "the job was cancelled, so CouchDB does not retry it"
    return SyncResult(job, result.state, False, result.status, f"{result.reason}; {note}")


def _timed_out(job: SyncJob, status: ReplicationStatus | None, timeout: float) -> SyncResult:
    state = status.state if status else "unknown"
    reason = f"still {state} after {timeout:g}s (--timeout); the job goes on"
    return SyncResult(job, state, False, status, reason, timed_out=True)


def describe(status: ReplicationStatus | None) -> str:
    """Progress in a few words: documents read and written, else checkpoint against source."""
    if status is None:
        return "no state yet"
    if status.docs_read is not None or status.docs_written is not None:
        return f"{status.docs_read or 0} read, {status.docs_written or 0} written"
    done, head = seq_number(status.checkpointed_seq), seq_number(status.source_seq)
    if head is not None:
        return f"checkpoint at {done or 0} of {head}"
    return "no progress reported yet"
