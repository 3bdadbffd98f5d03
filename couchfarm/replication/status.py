"""The state of every replication on a node, from the scheduler or, lacking one, the documents.

CouchDB 3 keeps non-terminal states (``running``, ``pending``, ``crashing``) only in
``_scheduler/docs``, with the Erlang error text in ``info.error``; ``_scheduler/jobs`` adds the crash
history; only ``completed``/``failed`` are written into the document (07a-07e). pouchdb-server has
no scheduler: its documents say ``triggered`` for a job that runs *or* retries a dead peer forever,
so for those couchfarm reads the checkpoint itself and probes both ends to give a reason.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError
from couchfarm.redact import redact, redact_url
from couchfarm.replication.api import replicator_docs, scheduler_docs, scheduler_jobs
from couchfarm.replication.endpoints import End, end_of, pouch_checkpoint_id
from couchfarm.replication.models import endpoint_url
from couchfarm.replication.plan import owner
from couchfarm.replication.render import Credentials
from couchfarm.replication.topology import Topology

log = logging.getLogger("couchfarm.replication")
ALERT_STATES = ("crashing", "failed", "error", "unreachable")
NODE_ROW = "(node)"  #: the doc_id of the row that stands for a node couchfarm could not read
DOC_STATES = {"triggered": "running", "completed": "completed", "error": "error", "failed": "failed"}
STATS = ("docs_read", "docs_written", "doc_write_failures")


@dataclass(frozen=True)
class ReplicationStatus:
    """One replication as an operator needs to see it; URLs are masked."""

    node: str
    doc_id: str
    state: str
    source: str = ""
    target: str = ""
    topology: str | None = None  #: the couchfarm topology that created it, if any
    continuous: bool | None = None
    reason: str | None = None
    last_update: str | None = None
    docs_read: int | None = None
    docs_written: int | None = None
    doc_write_failures: int | None = None
    checkpointed_seq: Any = None  #: opaque; compare with ``seq_number`` only
    source_seq: Any = None
    pending: int | None = None
    error_count: int | None = None
    via: str = "scheduler"  #: where the state came from: scheduler, document, document+probe

    @property
    def key(self) -> tuple[str, str]:
        return (self.node, self.doc_id)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def seq_number(seq: Any) -> int | None:
    """The comparable part of an update sequence: an int (pouchdb), or the ``N`` of CouchDB's
    ``"N-opaque"`` (the sum over shards, so it grows with the database). None when unknown."""
    if isinstance(seq, bool):
        return None
    if isinstance(seq, int):
        return seq
    if isinstance(seq, str) and seq.split("-", 1)[0].isdigit():
        return int(seq.split("-", 1)[0])
    return None


def collect(
    node: str, client: CouchClient, topo: Topology | None = None, creds: Credentials | None = None
) -> list[ReplicationStatus]:
    """Every replication in ``node``'s ``_replicator``, best source first."""
    docs = {d["_id"]: d for d in replicator_docs(client)}
    entries = scheduler_docs(client)
    if entries is None:
        log.debug("%s has no _scheduler: reading the _replicator documents' own fields", client.url)
        return [from_document(node, doc, probe=Prober(topo, creds)) for doc in docs.values()]
    jobs = {j.get("doc_id"): j for j in scheduler_jobs(client) or [] if j.get("doc_id")}
    out = [
        from_scheduler(node, e, docs.pop(e["doc_id"], None), jobs.get(e["doc_id"]))
        for e in entries
        if e.get("database", "_replicator") == "_replicator" and e.get("doc_id")
    ]
    out.extend(from_document(node, doc) for doc in docs.values())  # not picked up by the scheduler yet
    return sorted(out, key=lambda s: s.doc_id)


def collect_all(
    clients: dict[str, CouchClient], topo: Topology | None = None, creds: Credentials | None = None
) -> list[ReplicationStatus]:
    """Every node's replications; a node that cannot be read becomes one ``unreachable`` row instead
    of hiding the others."""
    out: list[ReplicationStatus] = []
    for node, client in clients.items():
        try:
            out.extend(collect(node, client, topo, creds))
        except CouchError as exc:
            out.append(
                ReplicationStatus(
                    node,
                    NODE_ROW,
                    "unreachable",
                    source=client.url,
                    reason=redact(f"{type(exc).__name__}: {exc}"),
                    via="couchfarm",
                )
            )
    return out


def from_scheduler(
    node: str, entry: dict[str, Any], doc: dict[str, Any] | None, job: dict[str, Any] | None
) -> ReplicationStatus:
    """A ``_scheduler/docs`` entry, with the document's ownership and the job's last crash."""
    info = entry.get("info") or {}
    state = str(entry.get("state") or "unknown")
    reason = info.get("error") or (doc or {}).get("_replication_state_reason")
    crash = _last_crash(job) if reason is None and entry.get("error_count") else None
    if crash:  # running again after a crash: say what the last one was
        reason = crash if state in ALERT_STATES else f"running again after a crash: {crash}"
    stats = {k: info.get(k) for k in STATS}
    checkpointed, source_seq = info.get("checkpointed_source_seq"), info.get("source_seq")
    return ReplicationStatus(
        node=node,
        doc_id=entry["doc_id"],
        state=state,
        source=redact_url(str(entry.get("source") or endpoint_url((doc or {}).get("source")))),
        target=redact_url(str(entry.get("target") or endpoint_url((doc or {}).get("target")))),
        topology=owner(doc or {}),
        continuous=(doc or {}).get("continuous"),
        reason=redact(str(reason)) if reason else None,
        last_update=entry.get("last_updated"),
        checkpointed_seq=checkpointed,
        source_seq=source_seq,
        pending=_pending(info.get("changes_pending"), checkpointed, source_seq),
        error_count=entry.get("error_count"),
        via="scheduler",
        **stats,
    )


def _last_crash(job: dict[str, Any] | None) -> str | None:
    for event in (job or {}).get("history", []):  # newest first
        if event.get("type") == "crashed" and event.get("reason"):
            return str(event["reason"])
    return None


def _pending(reported: Any, checkpointed: Any, source_seq: Any) -> int | None:
    """The server's ``changes_pending``, else an estimate from the sequence numbers."""
    if isinstance(reported, int):
        return reported
    done, head = seq_number(checkpointed), seq_number(source_seq)
    return max(0, head - done) if done is not None and head is not None else None


class Prober:
    """Reaches a replication's ends from couchfarm, for servers that keep no job state."""

    def __init__(self, topo: Topology | None, creds: Credentials | None) -> None:
        self.topo, self.creds = topo, creds

    def ends(self, doc: dict[str, Any]) -> tuple[End | None, End | None]:
        return end_of(doc.get("source"), self.topo, self.creds), end_of(
            doc.get("target"), self.topo, self.creds
        )


def from_document(node: str, doc: dict[str, Any], probe: Prober | None = None) -> ReplicationStatus:
    """The document's own fields (pouchdb-server, or CouchDB before the scheduler saw it)."""
    stats = doc.get("_replication_stats") or {}
    raw_state = doc.get("_replication_state")
    status = ReplicationStatus(
        node=node,
        doc_id=doc["_id"],
        state=DOC_STATES.get(str(raw_state), "initializing"),
        source=redact_url(endpoint_url(doc.get("source"))),
        target=redact_url(endpoint_url(doc.get("target"))),
        topology=owner(doc),
        continuous=doc.get("continuous"),
        reason=redact(str(doc["_replication_state_reason"]))
        if doc.get("_replication_state_reason")
        else None,
        last_update=doc.get("_replication_state_time"),
        checkpointed_seq=stats.get("checkpointed_source_seq", stats.get("last_seq")),
        via="document",
        **{k: stats.get(k) for k in STATS},
    )
    if probe is None or status.state != "running":
        return status
    return _probed(status, doc, probe)


def _probed(status: ReplicationStatus, doc: dict[str, Any], probe: Prober) -> ReplicationStatus:
    """A running pouchdb job: a dead end means it is retrying (CouchDB would say crashing);
    otherwise read its checkpoint and the source's sequence to show progress."""
    source, target = probe.ends(doc)
    if source is None or target is None:
        return status
    problems = [p for p in (source.probe(), target.probe()) if p]
    if problems:
        return _replace(status, state="crashing", reason=redact("; ".join(problems)), via="document+probe")
    try:
        checkpoint = source.client.get_local(source.db, pouch_checkpoint_id(source, target, doc))
        head = source.client.db_info(source.db).get("update_seq")
    except CouchError as exc:
        log.debug("cannot read the checkpoint of %s: %s", status.doc_id, exc)
        return status
    done = (checkpoint or {}).get("last_seq")
    return _replace(
        status,
        checkpointed_seq=done,
        source_seq=head,
        pending=_pending(None, done or 0, head),
        via="document+probe",
    )


def _replace(status: ReplicationStatus, **changes: Any) -> ReplicationStatus:
    return ReplicationStatus(**{**asdict(status), **changes})


def status_table(rows: list[ReplicationStatus]) -> list[str]:
    """A fixed-width table; sequences show their comparable number, the reason one line of 100."""
    width = max([len(r.doc_id) for r in rows] + [6])
    nodes = max([len(r.node) for r in rows] + [4])
    out = [
        f"{'NODE':<{nodes}}  {'DOC ID':<{width}}  {'STATE':<12} {'READ/WRITTEN':>13} {'FAIL':>5} "
        f"{'CHECKPOINT/SOURCE':>18} {'PENDING':>8}  {'UPDATED':<20}  REASON"
    ]
    for r in rows:
        rw = f"{_num(r.docs_read)}/{_num(r.docs_written)}"
        seqs = f"{_num(seq_number(r.checkpointed_seq))}/{_num(seq_number(r.source_seq))}"
        reason = " ".join((r.reason or "").split())[:100]
        out.append(
            f"{r.node:<{nodes}}  {r.doc_id:<{width}}  {r.state:<12} {rw:>13} {_num(r.doc_write_failures):>5} "
            f"{seqs:>18} {_num(r.pending):>8}  {_when(r.last_update):<20}  {reason}"
        )
    return out


def _when(stamp: str | None) -> str:
    """A timestamp to the second (pouchdb-server writes milliseconds, CouchDB does not)."""
    return "-" if not stamp else stamp.split(".", 1)[0].rstrip("Z") + "Z"


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)
