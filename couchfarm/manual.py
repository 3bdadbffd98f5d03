"""Manual conflict resolution for people: compare the leaves, pick one or write an edited merge.

Every write goes through :meth:`couchfarm.resolution.Engine.write`, the farm's own safe path: the new
winner first, and the losing leaves tombstoned only once it was accepted, so a body the server refuses
(a validate_doc_update, permissions) never leaves the document with fewer leaves than it had.

An edit takes minutes, not milliseconds: :func:`reread_unchanged` reads the leaves again right before
writing and refuses when their revs changed, so a person never overwrites an edit they did not see.
The ``_design/couchfarm`` view lists conflicted documents without scanning the changes feed.
Attachments follow the chosen body (``couchfarm/attachments.py``): ``pick`` keeps the picked leaf's
copies, ``edit`` the copies the proposing strategy chose, and ``attachments_from`` names another leaf.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from couchfarm import keys
from couchfarm.attachments import AttachmentChoiceError
from couchfarm.canonical import same
from couchfarm.couch import CouchClient
from couchfarm.errors import FarmError, NotFound
from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.plan import Plan, build_plan
from couchfarm.resolution import BASE_STRATEGIES, DocResult, Engine
from couchfarm.scan import scan
from couchfarm.state import FarmState

MANUAL = "manual"  #: the strategy name manual writes carry in plans and results
DESIGN_ID = "_design/couchfarm"
VIEW = "conflicts"
VIEW_MAP = "function (doc) { if (doc._conflicts) { emit(doc._id, doc._conflicts); } }"
#: CouchDB leaves design documents out of views unless asked; their conflicts matter most
VIEW_OPTIONS = {"include_design": True}
ABSENT: Any = object()  #: a field a leaf does not have (distinct from a JSON null)


class ManualRefused(FarmError):
    """Raised before anything is written: unknown document or rev, an invalid edit, leaves changed."""


@dataclass(frozen=True)
class Proposal:
    """What the routed (or given) strategy would write; ``reason`` says why there is no body."""

    strategy: str
    body: dict[str, Any] | None = None
    delete: bool = False
    reason: str | None = None
    chosen: tuple[str, ...] = ()  #: the leaves whose attachments follow the body (``Resolution``)
    attachments: Mapping[str, str | None] | None = None


@dataclass(frozen=True)
class FieldRow:
    """One top-level field across the live leaves (winner first) and the proposal."""

    field: str
    values: tuple[Any, ...]  #: per live leaf; ``ABSENT`` where the leaf lacks the field
    proposed: Any
    differs: bool


# -- reading -----------------------------------------------------------------------------------


def read_conflict(engine: Engine, db: str, doc_id: str) -> ConflictSet:
    """Every leaf of one document; ``ManualRefused`` when it does not exist (``NotFound`` for the db)."""
    conflict = engine.read(db, [doc_id])[doc_id]
    refuse_partial(conflict)
    if not conflict.leaves:
        engine.client.db_info(db)  # a missing database is the better message
        raise ManualRefused(f"document {doc_id!r} not found in {db}")
    return conflict


def refuse_partial(conflict: ConflictSet) -> None:
    if conflict.read_error is not None:
        raise ManualRefused(
            f"the leaves of {conflict.doc_id!r} could not be read completely ({conflict.read_error}): "
            "nothing written; try again"
        )


def is_conflicted(conflict: ConflictSet) -> bool:
    """More than one live leaf: what a person can resolve by picking or editing."""
    return len(conflict.live) > 1


def reread_unchanged(engine: Engine, before: ConflictSet) -> ConflictSet:
    """The leaves read again; ``ManualRefused`` when their revs differ from ``before`` (someone wrote,
    or the farm resolved it, while a person was deciding)."""
    now = engine.read(before.db, [before.doc_id])[before.doc_id]
    refuse_partial(now)
    if now.revs != before.revs:
        raise ManualRefused(
            f"the leaves of {before.doc_id!r} changed while you were editing "
            f"(were {', '.join(before.revs)}; now {', '.join(now.revs) or 'none'}): nothing written; "
            "run `couchfarm conflicts show` and start again"
        )
    return now


# -- proposing and comparing -------------------------------------------------------------------


def propose(engine: Engine, conflict: ConflictSet) -> Proposal:
    """The merge the routed strategy would write, without provenance: a person's write is ``manual``."""
    resolver, spec = engine.router.route(conflict.db, conflict)
    try:
        if spec.deletion == "tombstone_wins":
            conflict = engine.with_history(conflict)
        if spec.strategy in BASE_STRATEGIES:
            conflict = engine.with_base(conflict)
    except FarmError as exc:  # the ancestor's body is gone, or the read failed: show the leaves anyway
        return Proposal(resolver.name, reason=f"{type(exc).__name__}: {exc}")
    try:
        resolution = resolver.resolve(conflict)
    except Exception as exc:  # a user strategy's bug must not hide the leaves from the person
        return Proposal(resolver.name, reason=f"{resolver.name} raised {type(exc).__name__}: {exc}")
    if resolution.unresolvable is not None:
        return Proposal(resolver.name, reason=f"unresolvable: {resolution.unresolvable}")
    if resolution.delete or resolution.body is None:
        return Proposal(resolver.name, delete=True, reason="the strategy deletes the document")
    return Proposal(
        resolver.name, resolution.body, chosen=resolution.chosen, attachments=resolution.attachments
    )


def compare(conflict: ConflictSet, proposal: Proposal | None) -> list[FieldRow]:
    """One row per top-level field, in the order the fields first appear (winner first)."""
    live = conflict.live
    bodies = [leaf.body for leaf in live]
    merged = proposal.body if proposal and proposal.body is not None else {}
    names = list(dict.fromkeys(name for body in [*bodies, merged] for name in body))
    rows = []
    for name in names:
        values = tuple(body.get(name, ABSENT) for body in bodies)
        differs = any(not _same_value(values[0], v) for v in values[1:])
        rows.append(FieldRow(name, values, merged.get(name, ABSENT), differs))
    if any(leaf.attachments for leaf in live):
        stubs = tuple(_attachment_digests(leaf.attachments) for leaf in live)
        rows.append(FieldRow("_attachments", stubs, ABSENT, any(s != stubs[0] for s in stubs)))
    return rows


def _same_value(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    return same(a, b)


def _attachment_digests(attachments: dict[str, Any]) -> dict[str, Any]:
    return {name: stub.get("digest", "") for name, stub in sorted(attachments.items())}


def describe(conflict: ConflictSet, proposal: Proposal | None) -> dict[str, Any]:
    """The whole comparison as JSON, values complete (``show --json``)."""
    live = conflict.live
    return {
        "db": conflict.db,
        "doc_id": conflict.doc_id,
        "conflict": is_conflicted(conflict),
        "winner": conflict.winner_rev,
        "live": [{"rev": leaf.rev, "body": leaf.body, "attachments": leaf.attachments} for leaf in live],
        "deleted": [leaf.rev for leaf in conflict.deleted],
        "fields": [
            {
                "field": row.field,
                "differs": row.differs,
                "values": {leaf.rev: v for leaf, v in zip(live, row.values, strict=True) if v is not ABSENT},
                **({"proposed": row.proposed} if row.proposed is not ABSENT else {}),
            }
            for row in compare(conflict, proposal)
        ],
        "proposed": None if proposal is None else proposal.__dict__,
    }


def pretty(body: dict[str, Any]) -> str:
    """A body as a person edits it: indented JSON, non-ASCII kept, a final newline."""
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def cell(value: Any, width: int) -> str:
    """A value as compact JSON cut to ``width`` characters (``-`` for an absent field)."""
    text = "-" if value is ABSENT else json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


# -- writing -----------------------------------------------------------------------------------


def live_leaf(conflict: ConflictSet, rev: str) -> Leaf:
    """The live leaf ``rev``; ``ManualRefused`` listing the live revs when it is not one."""
    leaf = next((leaf for leaf in conflict.live if leaf.rev == rev), None)
    if leaf is None:
        live = ", ".join(leaf.rev for leaf in conflict.live) or "none"
        raise ManualRefused(f"{rev} is not a live leaf of {conflict.doc_id!r}; live revs: {live}")
    return leaf


def by_hand(conflict: ConflictSet, body: dict[str, Any], attachments_from: str) -> Resolution:
    """``body`` with the attachments of live leaf ``attachments_from`` (names it lacks from the
    other live leaves, CouchDB's winner first)."""
    live_leaf(conflict, attachments_from)
    order = (attachments_from, *(leaf.rev for leaf in conflict.live if leaf.rev != attachments_from))
    return Resolution.merged(body, order)


def manual_plan(conflict: ConflictSet, resolution: Resolution) -> Plan:
    try:
        return build_plan(conflict, resolution, MANUAL)
    except AttachmentChoiceError as exc:
        raise ManualRefused(f"{exc}: choose with --attachments-from REV") from None


def pick_plan(conflict: ConflictSet, rev: str, attachments_from: str | None = None) -> Plan:
    """The writes that make live leaf ``rev``'s body the winner and tombstone every other live leaf;
    attachments come from ``rev`` too unless ``attachments_from`` names another live leaf."""
    chosen = live_leaf(conflict, rev)
    return manual_plan(conflict, by_hand(conflict, chosen.body, attachments_from or rev))


def parse_edit(text: str) -> dict[str, Any]:
    """An edited body: a JSON object without ``_`` members (the server owns ``_id``, ``_rev``,
    ``_attachments``..., and ``_deleted`` would turn a resolution into a deletion)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ManualRefused(f"the edited file is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ManualRefused(f"the edited file must hold a JSON object, not {type(value).__name__}")
    reserved = sorted(name for name in value if name.startswith("_"))
    if reserved:
        raise ManualRefused(f"members starting with '_' are reserved by CouchDB: {', '.join(reserved)}")
    return value


def edit_plan(
    conflict: ConflictSet,
    body: dict[str, Any],
    proposal: Proposal | None = None,
    attachments_from: str | None = None,
) -> Plan:
    """The writes for an edited body. Attachments: those of ``attachments_from`` when given, else
    the ones the proposal's strategy chose, else those of the leaf the draft started from (CouchDB's
    current winner)."""
    if attachments_from is None and proposal is not None and proposal.body is not None:
        return manual_plan(conflict, Resolution.merged(body, proposal.chosen, proposal.attachments))
    return manual_plan(conflict, by_hand(conflict, body, attachments_from or conflict.live[0].rev))


def apply(engine: Engine, plan: Plan) -> DocResult:
    """Carry out ``plan`` through the engine's safe write path (winner first, then tombstones)."""
    return engine.write(plan.conflict.db, [plan])[plan.doc_id]


def has_writes(plan: Plan) -> bool:
    return plan.winner_write is not None or bool(plan.tombstones)


# -- the conflicts view ------------------------------------------------------------------------


def install_view(client: CouchClient, db: str) -> str:
    """Create or update ``_design/couchfarm`` so its ``conflicts`` view has our map; other views and
    members are kept. ``created``, ``updated`` or ``unchanged`` (no new rev when already identical)."""
    try:
        ddoc: dict[str, Any] = client.get(db, DESIGN_ID)
    except NotFound:
        ddoc = {"_id": DESIGN_ID}
    views = dict(ddoc.get("views") or {})
    wanted = {"map": VIEW_MAP}
    options = dict(ddoc.get("options") or {})
    if (
        views.get(VIEW) == wanted
        and ddoc.get("language", "javascript") == "javascript"
        and options.items() >= VIEW_OPTIONS.items()
    ):
        return "unchanged"
    ddoc["views"] = {**views, VIEW: wanted}
    ddoc["options"] = {**options, **VIEW_OPTIONS}
    ddoc.setdefault("language", "javascript")
    client.put(db, ddoc)
    return "updated" if "_rev" in ddoc else "created"


def list_conflicts(client: CouchClient, db: str, page_size: int = 1000) -> tuple[str, list[dict[str, Any]]]:
    """Conflicted documents as ``{"id", "revs"}`` (the non-winning live revs) and where they came
    from: ``view``, or ``scan`` (the changes feed) when the view is not installed. Conflicted design
    documents are listed either way (a server whose view engine ignores ``include_design``, such as
    pouchdb-server, gets them from ``_all_docs``)."""
    try:
        rows = _view_rows(client, db, page_size)
    except NotFound:
        client.db_info(db)  # the database itself is missing: say that instead of scanning
        return "scan", [{"id": c.doc_id, "revs": list(c.live[1:])} for c in scan(client, db)]
    seen = {row["id"] for row in rows}
    return "view", rows + [row for row in design_conflicts(client, db) if row["id"] not in seen]


def design_conflicts(client: CouchClient, db: str) -> list[dict[str, Any]]:
    """Conflicted ``_design/`` documents as ``{"id", "revs"}``, from ``_all_docs`` (a short range)."""
    rows = client.all_docs(db, startkey="_design/", endkey="_design0", include_docs=True, conflicts=True)
    return [
        {"id": row["id"], "revs": list(row["doc"]["_conflicts"])}
        for row in rows
        if (row.get("doc") or {}).get("_conflicts")
    ]


def _view_rows(client: CouchClient, db: str, page_size: int) -> list[dict[str, Any]]:
    """Every row of the view, a page at a time (keys are document ids: unique, so paging by key)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": page_size}
    while True:
        rows = client.view(db, DESIGN_ID.removeprefix("_design/"), VIEW, **params)
        out.extend({"id": row["id"], "revs": list(row.get("value") or [])} for row in rows)
        if len(rows) < page_size:
            return out
        params = {"limit": page_size, "startkey": rows[-1]["key"], "skip": 1}


# -- the pause switch --------------------------------------------------------------------------


def paused_databases(state: FarmState) -> list[str]:
    """Databases whose automatic resolution is paused (the set ``FarmState.pause`` writes)."""
    return sorted(state.redis.smembers(state.ks(keys.PAUSED)))
