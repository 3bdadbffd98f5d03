"""Compare a topology with each node's ``_replicator``: create / update / delete / unchanged.

A document belongs to couchfarm when its ``couchfarm.topology`` marker names this topology; anything
else is never changed or deleted, even under one of our ids (it is reported as ``foreign``). Fields
the server writes (``_replication_*``, ``owner``) are ignored when comparing, so a running or finished
job is not mistaken for a changed spec. Values shown in a plan are masked: a credential change shows
as ``credentials differ``.

pouchdb-server's limits (docs/couchdb-notes.md §6, §7) turn some changes into ``blocked`` ones, which
``apply`` skips and reports: its validate function refuses any edit of a running job (403), deleting
a running job kills the process, and a ``selector`` replication from it kills the source's process.

The declared ``_security`` objects are planned alongside (``security_plan.py``); their warnings (a
change that would open a database to everyone) are the plan's ``warnings``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError, NotFound
from couchfarm.replication.api import replicator_docs
from couchfarm.replication.changes import Action, FieldDiff, diff
from couchfarm.replication.errors import ReplicationBlocked
from couchfarm.replication.models import MARKER, strip_server_fields
from couchfarm.replication.render import Credentials, render
from couchfarm.replication.security_plan import SecurityChange, plan_security
from couchfarm.replication.topology import Replication, Topology

PREFIX = "couchfarm:"
NODE = "(node)"  #: the doc_id of a change that stands for a whole node
POUCH_RUNNING = (
    "pouchdb-server refuses edits of a running job (403) and dies when it is deleted; "
    "change it once the job has stopped, or on CouchDB"
)


@dataclass
class Change:
    node: str
    doc_id: str
    action: Action
    diffs: list[FieldDiff] = field(default_factory=list)
    body: dict[str, Any] | None = None  #: the desired document, credentials included: never print
    rev: str | None = None
    blocked: str | None = None  #: why apply will not carry it out
    state: str | None = None  #: the server-written state, when the document has one

    @property
    def pending(self) -> bool:
        """Whether the node differs from the declaration in a way ``apply`` is meant to fix."""
        return self.action not in (Action.UNCHANGED, Action.ORPHAN)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "doc_id": self.doc_id, "action": self.action.value}
        if self.diffs:
            out["fields"] = [d.as_json() for d in self.diffs]
        if self.blocked:
            out["blocked"] = self.blocked
        return out


@dataclass
class Plan:
    topology: str
    changes: list[Change]
    security: list[SecurityChange] = field(default_factory=list)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.pending]

    @property
    def has_pending(self) -> bool:
        """Whether apply has anything to do, documents or ``_security`` objects."""
        return bool(self.pending) or any(c.pending for c in self.security)

    @property
    def warnings(self) -> list[str]:
        return [w for c in self.security for w in c.warnings]

    def counts(self) -> dict[str, int]:
        return {a.value: sum(c.action is a for c in self.changes) for a in Action}

    def as_json(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "pending": self.has_pending,
            "counts": self.counts(),
            "changes": [c.as_json() for c in self.changes],
            "security": [c.as_json() for c in self.security],
            "warnings": self.warnings,
        }

    def lines(self, verbose: bool = False) -> list[str]:
        """A human summary: one line per change, its field diffs indented below it."""
        counts = self.counts()
        head = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
        out = [f"topology {self.topology}: {head or 'nothing declared'}"]
        for c in self.changes:
            if c.action is Action.UNCHANGED and not verbose:
                continue
            out.append(f"  {c.action.value:<9} {c.node}  {c.doc_id}" + (f"  [{c.state}]" if c.state else ""))
            out.extend(f"      {d.line()}" for d in c.diffs if c.action is not Action.CREATE or verbose)
            if c.blocked:
                out.append(f"      blocked: {c.blocked}")
        return out + self._security_lines(verbose)

    def _security_lines(self, verbose: bool) -> list[str]:
        if not self.security:
            return []
        counts = {a.value: sum(c.action is a for c in self.security) for a in Action}
        out = ["security: " + ", ".join(f"{n} {a}" for a, n in counts.items() if n)]
        for c in self.security:
            if c.pending or verbose:
                out.extend(c.lines())
        return out + [f"WARNING: {w}" for w in self.warnings]


def build_plan(
    topo: Topology, clients: Mapping[str, CouchClient], creds: Credentials, *, prune: bool = False
) -> Plan:
    """Read every node's couchfarm documents and compare them with the declared ones. A node that
    cannot be read does not stop the plan (an edge fleet always has one offline): its documents are
    ``unknown`` and left alone."""
    flavours, down = _flavours(topo, clients)
    ddocs = DesignDocs(clients)
    changes: list[Change] = []
    for node in topo.nodes:
        try:
            current = (
                {d["_id"]: d for d in replicator_docs(clients[node], PREFIX)} if node not in down else {}
            )
        except CouchError as exc:
            down[node] = f"{type(exc).__name__}: {exc}"
        if node in down:
            reps = topo.on_node(node)
            changes += [Change(node, r.doc_id, Action.UNKNOWN, blocked=down[node]) for r in reps] or [
                Change(node, NODE, Action.UNKNOWN, blocked=down[node])
            ]
            continue
        for rep in topo.on_node(node):
            change = _declared(rep, current.pop(rep.doc_id, None), topo, creds, flavours)
            change.blocked = change.blocked or _source_block(rep, change, flavours, ddocs)
            changes.append(change)
        changes.extend(
            _undeclared(node, doc, topo.name, flavours[node], prune)
            for doc in current.values()
            if owner(doc) == topo.name
        )
    return Plan(topo.name, changes, plan_security(topo, clients, down))


def _flavours(topo: Topology, clients: Mapping[str, CouchClient]) -> tuple[dict[str, bool], dict[str, str]]:
    """Which nodes run Apache CouchDB, and why the others could not be asked."""
    flavours, down = {}, {}
    for name in topo.nodes:
        try:
            flavours[name] = clients[name].is_couchdb
        except CouchError as exc:
            down[name] = f"cannot read this node: {type(exc).__name__}: {exc}"
    return flavours, down


def owner(doc: dict[str, Any]) -> str | None:
    """The topology that created ``doc``, or None when couchfarm did not."""
    marker = doc.get(MARKER)
    return str(marker.get("topology")) if isinstance(marker, dict) and marker.get("topology") else None


def running_on_pouch(doc: dict[str, Any], couchdb: bool) -> bool:
    """A pouchdb-server job that is running: it can be neither edited nor deleted safely."""
    return not couchdb and doc.get("_replication_state") == "triggered"


def _declared(
    rep: Replication,
    doc: dict[str, Any] | None,
    topo: Topology,
    creds: Credentials,
    flavours: dict[str, bool],
) -> Change:
    couchdb = flavours[rep.node]
    change = Change(rep.node, rep.doc_id, Action.CREATE)
    if doc is not None:
        change.rev, change.state = doc.get("_rev"), doc.get("_replication_state")
    try:
        change.body = render(rep, topo, creds, couchdb=couchdb)
    except ReplicationBlocked as exc:
        change.blocked = str(exc)
    if doc is not None and owner(doc) != topo.name:
        change.action = Action.FOREIGN
        change.blocked = f"a document with this id exists and belongs to {owner(doc) or 'someone else'}"
        return change
    desired = strip_server_fields(change.body or {})
    change.diffs = diff(strip_server_fields(doc or {}), desired) if change.body else []
    if doc is not None:
        change.action = Action.UPDATE if change.diffs or change.body is None else Action.UNCHANGED
        if change.action is Action.UPDATE and running_on_pouch(doc, couchdb):
            change.blocked = change.blocked or POUCH_RUNNING
    return change


def _undeclared(node: str, doc: dict[str, Any], name: str, couchdb: bool, prune: bool) -> Change:
    change = Change(
        node,
        doc["_id"],
        Action.DELETE if prune else Action.ORPHAN,
        rev=doc.get("_rev"),
        state=doc.get("_replication_state"),
    )
    if prune and running_on_pouch(doc, couchdb):
        change.blocked = POUCH_RUNNING
    return change


class DesignDocs:
    """Whether filter design documents exist on the source, asked once per (node, db, ddoc)."""

    def __init__(self, clients: Mapping[str, CouchClient]) -> None:
        self.clients, self.seen = clients, dict[tuple[str, str, str], bool]()

    def exists(self, node: str, db: str, ddoc: str) -> bool:
        key = (node, db, ddoc)
        if key not in self.seen:
            try:
                self.clients[node].get(db, f"_design/{ddoc}")
                self.seen[key] = True
            except NotFound:
                self.seen[key] = False
            except CouchError:  # cannot tell: do not block on a guess
                self.seen[key] = True
        return self.seen[key]


def _source_block(
    rep: Replication, change: Change, flavours: dict[str, bool], ddocs: DesignDocs
) -> str | None:
    if change.action not in (Action.CREATE, Action.UPDATE):
        return None
    if "selector" in rep.options and flavours.get(rep.source) is False:
        return (
            f"the source {rep.source} is pouchdb-server, which dies on _changes?filter=_selector; "
            "use doc_ids or a filter function there"
        )
    name = rep.options.get("filter")
    if name == "_view":
        name = str(rep.options.get("query_params", {}).get("view", ""))
    ddoc = name.split("/")[0] if isinstance(name, str) and "/" in name else None
    if ddoc and rep.source in flavours and not ddocs.exists(rep.source, rep.db, ddoc):
        return (
            f"_design/{ddoc} is missing from {rep.db} on {rep.source}: CouchDB would fail the job "
            "(state error) and pouchdb-server would die"
        )
    return None
