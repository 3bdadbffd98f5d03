"""Compare each node's ``_security`` objects with the topology, and write those that differ.

A database's object applies on every node that replicates it (the source or the target of any of
its replications) and on the nodes named under its ``nodes:``. The plan is field-level
(``members.roles: ["_admin"] -> ["app"]``). A change that empties ``members`` (CouchDB then lets
every user in) or ``admins`` is never made silently: the change carries a warning, ``plan`` prints it
and ``apply`` refuses it unless ``allow_widen`` is given. An equal object is never written, so
applying twice writes nothing the second time. couchfarm creates no databases: a missing one is
reported, not created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError
from couchfarm.replication.api import get_security, put_security
from couchfarm.replication.changes import Action, FieldDiff
from couchfarm.replication.security import KINDS, SECTIONS, SecurityObject, body_for, normalize, widening
from couchfarm.replication.topology import Topology


@dataclass
class SecurityChange:
    """One database's ``_security`` on one node."""

    node: str
    db: str
    action: Action
    diffs: list[FieldDiff] = field(default_factory=list)
    body: dict[str, Any] | None = None  #: the whole object to write
    blocked: str | None = None  #: why apply will not write it
    widens: dict[str, str] = field(default_factory=dict)  #: section it empties -> warning

    @property
    def warnings(self) -> list[str]:
        return list(self.widens.values())

    @property
    def doc_id(self) -> str:
        """How the change is named in outcomes, next to ``_replicator`` document ids."""
        return f"{self.db}/_security"

    @property
    def pending(self) -> bool:
        return self.action is not Action.UNCHANGED

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node, "db": self.db, "action": self.action.value}
        if self.diffs:
            out["fields"] = [d.as_json() for d in self.diffs]
        if self.blocked:
            out["blocked"] = self.blocked
        if self.warnings:
            out["warnings"] = list(self.warnings)
        return out

    def lines(self) -> list[str]:
        out = [f"  {self.action.value:<9} {self.node}  {self.doc_id}"]
        out.extend(f"      {d.line()}" for d in self.diffs)
        if self.blocked:
            out.append(f"      blocked: {self.blocked}")
        return out


def declared_security(topo: Topology) -> dict[tuple[str, str], SecurityObject]:
    """``(node, db) -> object`` for every node a database's entry applies to, in topology order."""
    order = list(topo.nodes)
    out: dict[tuple[str, str], SecurityObject] = {}
    for db, entry in topo.security.items():
        nodes = {n for r in topo.replications if r.db == db for n in (r.source, r.target)}
        nodes |= {n for n in entry.nodes if n in topo.nodes}
        for node in sorted(nodes, key=order.index):
            out[(node, db)] = entry.for_node(node)
    return out


def plan_security(
    topo: Topology, clients: Mapping[str, CouchClient], down: Mapping[str, str]
) -> list[SecurityChange]:
    """One change per declared object; a node that cannot be read gives ``unknown`` changes."""
    changes = []
    for (node, db), declared in declared_security(topo).items():
        if node in down:
            changes.append(SecurityChange(node, db, Action.UNKNOWN, blocked=down[node]))
            continue
        try:
            current = get_security(clients[node], db)
        except CouchError as exc:
            reason = f"cannot read {db}/_security: {type(exc).__name__}: {exc.reason or exc}"
            changes.append(SecurityChange(node, db, Action.UNKNOWN, blocked=reason))
            continue
        changes.append(compare(node, db, declared, current))
    return changes


def compare(node: str, db: str, declared: SecurityObject, current: dict[str, Any] | None) -> SecurityChange:
    """The change that turns ``current`` (None: no such database) into ``declared``."""
    if current is None:
        reason = f"database {db} does not exist on {node}; couchfarm creates no databases"
        return SecurityChange(node, db, Action.UNKNOWN, blocked=reason)
    before, after = normalize(current), declared.normal()
    diffs = [
        FieldDiff(f"{section}.{kind}", before[section][kind], after[section][kind])
        for section in SECTIONS
        for kind in KINDS
        if before[section][kind] != after[section][kind]
    ]
    if not diffs:
        return SecurityChange(node, db, Action.UNCHANGED)
    return SecurityChange(
        node,
        db,
        Action.UPDATE,
        diffs,
        body=body_for(declared, current),
        widens=widening(f"{node} {db}/_security", before, after),
    )


def refusal(change: SecurityChange, allow_widen: bool) -> str | None:
    """Why ``apply`` must not write ``change`` (blocked, or widening without ``allow_widen``)."""
    if change.blocked:
        return change.blocked
    if change.widens and not allow_widen:
        return f"refused without --allow-widen: it would empty {' and '.join(change.widens)}"
    return None


def write_security(change: SecurityChange, client: CouchClient) -> None:
    assert change.body is not None
    put_security(client, change.db, change.body)
