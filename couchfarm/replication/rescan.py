"""Re-scan a replication from the start: delete its checkpoints on both ends, recreate its document.

A checkpoint tells the replicator where to resume; after a bad filter, a restored target or lost
documents, resuming skips exactly what needs copying again. Steps, in this order:

1. find the checkpoint id (CouchDB: the scheduler's replication id without its ``+...`` tail, else the
   one ``_local`` checkpoint the two databases share; pouchdb-server: its md5 of both servers' uuids,
   databases and filter);
2. delete the document, which stops the job, so it cannot write a checkpoint again behind our back;
3. delete ``_local/<id>`` on the source and on the target;
4. write the document again without the server-written fields: the job starts from sequence 0.

A running pouchdb-server job is refused (deleting it kills the server).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from couchfarm.couch import CouchClient
from couchfarm.replication.api import delete_doc, get_doc, local_docs, put_doc, scheduler_doc, scheduler_jobs
from couchfarm.replication.endpoints import End, couch_checkpoint_id, end_of, pouch_checkpoint_id
from couchfarm.replication.errors import ReplicationBlocked
from couchfarm.replication.models import strip_server_fields
from couchfarm.replication.plan import running_on_pouch
from couchfarm.replication.render import Credentials
from couchfarm.replication.topology import Topology


@dataclass
class RescanReport:
    node: str
    doc_id: str
    checkpoint: str | None  #: the _local id, without the prefix
    removed: list[str] = field(default_factory=list)  #: the ends whose checkpoint existed and is gone
    rev: str = ""

    def line(self) -> str:
        gone = ", ".join(self.removed) or "none found"
        return (
            f"{self.node}/{self.doc_id}: checkpoint {self.checkpoint or '-'} removed from {gone}; "
            f"document recreated as {self.rev}"
        )


def rescan(
    node: str,
    client: CouchClient,
    doc_id: str,
    *,
    topo: Topology | None = None,
    creds: Credentials | None = None,
    checkpoint: str | None = None,
) -> RescanReport:
    """Run the four steps above for ``doc_id`` on ``node``; ``ReplicationBlocked`` if unsafe."""
    doc = get_doc(client, doc_id)
    if doc is None:
        raise ReplicationBlocked(f"{node} has no _replicator document {doc_id!r}", doc_id=doc_id, node=node)
    couchdb = client.is_couchdb
    if running_on_pouch(doc, couchdb):
        raise ReplicationBlocked(
            f"{doc_id} is running on pouchdb-server, which dies when a running job's document is "
            "deleted; re-scan it once the job has stopped",
            doc_id=doc_id,
            node=node,
        )
    source, target = end_of(doc.get("source"), topo, creds), end_of(doc.get("target"), topo, creds)
    if source is None or target is None:
        raise ReplicationBlocked(f"{doc_id}: source and target must be URLs", doc_id=doc_id, node=node)
    if checkpoint is None:
        checkpoint = (
            _couch_checkpoint(client, doc_id, source, target)
            if couchdb
            else pouch_checkpoint_id(source, target, doc)
        )
    body = {**strip_server_fields(doc), "_id": doc_id}
    delete_doc(client, doc_id, str(doc["_rev"]))
    report = RescanReport(node, doc_id, checkpoint)
    for name, end in (("source", source), ("target", target)):
        if checkpoint and end.client.delete_local(end.db, checkpoint):
            report.removed.append(name)
    report.rev = put_doc(client, body)
    return report


def _couch_checkpoint(client: CouchClient, doc_id: str, source: End, target: End) -> str | None:
    """The job's id while the scheduler knows it; a finished job's from the checkpoints both ends share."""
    entry = scheduler_doc(client, doc_id) or {}
    job = next((j for j in scheduler_jobs(client) or [] if j.get("doc_id") == doc_id), {})
    known = couch_checkpoint_id(entry.get("id") or job.get("id"))
    if known:
        return known
    shared = _checkpoints(source) & _checkpoints(target)
    if len(shared) > 1:
        raise ReplicationBlocked(
            f"{doc_id}: the two databases share several checkpoints ({', '.join(sorted(shared))}); "
            "name the one to delete with --checkpoint",
            doc_id=doc_id,
        )
    return shared.pop() if shared else None


def _checkpoints(end: End) -> set[str]:
    docs = local_docs(end.client, end.db) or []
    return {d["_id"].removeprefix("_local/") for d in docs if "replication_id_version" in d}
