"""Carry out a plan: create, replace and (with ``--prune``) delete ``_replicator`` documents.

Idempotent by construction: the plan is recomputed from the servers each run, and an unchanged
document is never written (a rewrite would restart its job, and on CouchDB re-run a finished one).
A replaced document keeps its ``_id`` and is written over the current ``_rev``: CouchDB restarts
the job with the new spec; the replication id, and so its checkpoints, change only when the spec
parts CouchDB hashes change. One failed change never stops the others; each gets an outcome.
``_security`` objects follow the documents; one that would empty ``members`` or ``admins`` is refused
(``blocked``) unless ``allow_widen`` is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from functools import partial

from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError
from couchfarm.replication.api import delete_doc, put_doc
from couchfarm.replication.changes import Action
from couchfarm.replication.plan import Change, Plan
from couchfarm.replication.security_plan import SecurityChange, refusal, write_security

log = logging.getLogger("couchfarm.replication")


class Result(str, Enum):
    DONE = "done"  # the node now matches the declaration for this document
    BLOCKED = "blocked"  # not attempted: the server cannot take it safely (see the plan's reason)
    FAILED = "failed"  # attempted, the server refused; the others went on


@dataclass(frozen=True)
class Outcome:
    change: Change | SecurityChange
    result: Result
    detail: str = ""

    def line(self) -> str:
        c = self.change
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.result.value:<7} {c.action.value:<7} {c.node}  {c.doc_id}{tail}"


def apply_plan(plan: Plan, clients: Mapping[str, CouchClient], *, allow_widen: bool = False) -> list[Outcome]:
    """Apply every pending, unblocked change; one outcome per pending change."""
    outcomes = []
    for change in plan.pending:
        write = partial(_apply_one, change, clients[change.node])
        outcomes.append(_carry_out(change, change.blocked, write))
    for sec in (c for c in plan.security if c.pending):
        why = refusal(sec, allow_widen)
        outcomes.append(_carry_out(sec, why, partial(write_security, sec, clients[sec.node])))
    return outcomes


def _carry_out(change: Change | SecurityChange, blocked: str | None, write: Callable[[], None]) -> Outcome:
    if blocked:
        outcome = Outcome(change, Result.BLOCKED, blocked)
    else:
        try:
            write()
            outcome = Outcome(change, Result.DONE)
        except CouchError as exc:
            outcome = Outcome(change, Result.FAILED, f"{type(exc).__name__}: {exc.reason or exc}")
    log.info(
        "replication %s %s on %s",
        change.action.value,
        change.doc_id,
        change.node,
        extra={"doc_id": change.doc_id, "node": change.node, "outcome": outcome.result.value},
    )
    return outcome


def _apply_one(change: Change, client: CouchClient) -> None:
    if change.action is Action.DELETE:
        assert change.rev is not None
        delete_doc(client, change.doc_id, change.rev)
    elif change.action in (Action.CREATE, Action.UPDATE):
        assert change.body is not None
        put_doc(client, change.body, change.rev if change.action is Action.UPDATE else None)
