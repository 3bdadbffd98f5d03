"""The audit archive: every resolution's inputs and output, so any of them can be inspected and undone.

Before the losing leaves of a document are tombstoned, one archive document is written to the
audit database with every live leaf (rev and body), the merge result, the strategy and the time.
Its id is ``{db}:{doc_id}:{digest of the input revs}``: the same resolution replayed writes the same
id, and the 409 that follows means "already archived".

``undo`` puts an archived resolution back: by default as the conflict it was (each losing leaf's
body written again as a new child of its tombstone, and the original winner's body on top of the
merge), or with ``pick`` one archived leaf's body as the winner.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from couchfarm.canonical import canonical, digest
from couchfarm.console import printable
from couchfarm.couchapi import ArchiveCouch
from couchfarm.errors import FarmError, NotFound
from couchfarm.models import TOMBSTONE_FIELD, Leaf
from couchfarm.plan import Plan


class Archive:
    """The audit database ``db`` (``archive_db``): the engine's ``Archiver``, and what ``undo`` reads."""

    def __init__(self, client: ArchiveCouch, db: str, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.db = db
        self.clock = clock
        self._created = False

    @staticmethod
    def entry_id(db: str, doc_id: str, revs: list[str]) -> str:
        return f"{db}:{doc_id}:{digest(sorted(revs), 16)}"

    def record(self, db: str, plans: list[Plan], winner_revs: dict[str, str | None]) -> None:
        """Write one archive document per plan; raises ``CouchError`` unless every one is stored."""
        if not self._created:
            self.client.create_db(self.db)
            self._created = True
        docs = [self._doc(db, p, winner_revs.get(p.doc_id)) for p in plans]
        failed = [r for r in self.client.bulk_docs(self.db, docs) if not r.ok and r.kind != "conflict"]
        if failed:
            from couchfarm.errors import CouchError

            raise CouchError(f"archive refused {failed[0].id}: {failed[0].error} {failed[0].reason}")

    def _doc(self, db: str, plan: Plan, winner_rev: str | None) -> dict[str, Any]:
        live = plan.conflict.live
        return {
            "_id": self.entry_id(db, plan.doc_id, plan.conflict.revs),
            "db": db,
            "doc_id": plan.doc_id,
            "strategy": plan.strategy,
            "at": self.clock(),
            "winner_rev": live[0].rev if live else None,
            "merged_rev": winner_rev,
            "merged": plan.merged,
            "deleted": plan.merged is None,
            "leaves": [{"rev": leaf.rev, "body": leaf.body} for leaf in live],
        }

    def entries(self, db: str, doc_id: str, *, must_exist: bool = False) -> list[dict[str, Any]]:
        """Archived resolutions of one document, oldest first (none while nothing was archived);
        with ``must_exist``, ``FarmError`` when the archive database does not exist (a misspelt
        ``archive_db``, or nothing was ever archived there)."""
        prefix = f"{db}:{doc_id}:"
        try:
            rows = self.client.all_docs(self.db, startkey=prefix, endkey=prefix + "\ufff0", include_docs=True)
        except NotFound:
            if not must_exist:
                return []
            raise FarmError(
                f"the archive database {self.db} (archive_db) does not exist on {self.client.url}: "
                "nothing was ever archived there; is archive_db the one the farm writes to?"
            ) from None
        return sorted((r["doc"] for r in rows if r.get("doc")), key=lambda d: d["at"])


def undo(
    client: ArchiveCouch, archive: Archive, db: str, doc_id: str, *, pick: str | None = None
) -> list[str]:
    """Restore the latest archived resolution of ``doc_id``; returns the revisions written."""
    entries = archive.entries(db, doc_id, must_exist=True)
    if not entries:
        raise FarmError(f"no archived resolution of {printable(doc_id)} in {archive.db}")
    entry = entries[-1]
    leaves = [Leaf.from_doc(d) for d in client.read_leaves(db, [doc_id])[doc_id]]
    live = sorted((leaf for leaf in leaves if not leaf.deleted), key=lambda leaf: leaf.rev, reverse=True)
    bodies = {item["rev"]: item["body"] for item in entry["leaves"]}
    if pick is not None:
        if pick not in bodies:
            raise FarmError(
                f"{pick} is not an archived leaf of {printable(doc_id)} (have {', '.join(sorted(bodies))})"
            )
        return [_write_on_top(client, db, doc_id, live, bodies[pick])]
    written = []
    for rev, body in bodies.items():
        if rev == entry["winner_rev"]:
            continue
        tomb = next((leaf for leaf in leaves if leaf.deleted and leaf.ancestry[1:2] == (rev,)), None)
        if tomb is None:
            raise FarmError(
                f"the tombstone of {rev} is no longer a leaf of {printable(doc_id)}; use --pick instead"
            )
        written.append(_resurrect(client, db, doc_id, tomb, body))
    if entry["winner_rev"] in bodies and live:
        written.append(_write_on_top(client, db, doc_id, live, bodies[entry["winner_rev"]]))
    return written


def _write_on_top(client: ArchiveCouch, db: str, doc_id: str, live: list[Leaf], body: dict[str, Any]) -> str:
    from couchfarm.models import winner_key

    if not live:
        raise FarmError(f"{printable(doc_id)} has no live leaf to write on")
    winner = max(live, key=lambda leaf: winner_key(leaf.rev, False))
    result = client.put(db, {"_id": doc_id, "_rev": winner.rev, **canonical(body)})
    return str(result["rev"])


def _resurrect(client: ArchiveCouch, db: str, doc_id: str, tomb: Leaf, body: dict[str, Any]) -> str:
    """A new live leaf under a tombstone (``new_edits:false``), bringing a losing leaf back."""
    body = {k: v for k, v in body.items() if k != TOMBSTONE_FIELD}
    new_hash = digest({"parent": tomb.rev, "body": body})
    generation = tomb.generation + 1
    doc = {
        "_id": doc_id,
        "_rev": f"{generation}-{new_hash}",
        "_revisions": {"start": generation, "ids": [new_hash] + [r.split("-", 1)[1] for r in tomb.ancestry]},
        **canonical(body),
    }
    result = client.bulk_docs(db, [doc], new_edits=False)[0]
    if not result.ok:
        raise FarmError(f"restoring a leaf of {printable(doc_id)} failed: {result.error} {result.reason}")
    return str(doc["_rev"])
