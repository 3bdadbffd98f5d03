"""A fake behind the engine's typed seam (couchfarm/couchapi.py ``EngineCouch``), for unit tests of the
engine's own logic: which writes it makes in which order, and what it concludes from each answer.

It is not CouchDB and proves nothing about CouchDB: it keeps no revision tree, mints no real revision
ids and answers writes as a test scripts them. How CouchDB (and pouchdb-server) behave is tested in
the integration tier and from recorded replies (docs/couchdb-notes.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from couchfarm.errors import BadRequest, NotFound
from couchfarm.models import BulkItemResult
from couchfarm.replies import LeafRead


def leaf_doc(doc_id: str, rev: str, body: dict[str, Any], parent: str = "1-root") -> dict[str, Any]:
    """A leaf as a bulk read returns it: the body with ``_id``, ``_rev`` and ``_revisions``."""
    generation, digest = rev.split("-", 1)
    ids = [digest, parent.split("-", 1)[1]]
    return {**body, "_id": doc_id, "_rev": rev, "_revisions": {"start": int(generation), "ids": ids}}


@dataclass
class FakeCouch:
    """Documents as their leaves; every ``_bulk_docs`` request kept in ``requests``."""

    leaves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  #: doc id -> its leaf docs
    refuse: dict[str, str] = field(default_factory=dict)  #: doc id -> the error its writes get
    reject_whole: set[str] = field(default_factory=set)  #: ids that make a whole request a 400
    read_error: Exception | None = None  #: raised by every bulk read
    requests: list[list[dict[str, Any]]] = field(default_factory=list)
    url: str = "http://fake"

    def read_leaf_sets(
        self, db: str, doc_ids: Iterable[str], known: dict[str, list[str]] | None = None
    ) -> dict[str, LeafRead]:
        if self.read_error is not None:
            raise self.read_error
        return {d: LeafRead(docs=[dict(doc) for doc in self.leaves.get(d, [])], gone=d not in self.leaves)
                for d in doc_ids}  # fmt: skip

    def get(self, db: str, doc_id: str, **params: Any) -> Any:
        if doc_id not in self.leaves:
            raise NotFound(f"{doc_id} is missing")
        return dict(self.leaves[doc_id][0])

    def revs_deleted(self, db: str, doc_id: str, revs: list[str]) -> dict[str, bool]:
        return {}

    def read_revisions(self, db: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        return {}

    def bulk_docs(
        self, db: str, docs: list[dict[str, Any]], *, new_edits: bool = True
    ) -> list[BulkItemResult]:
        self.requests.append([dict(doc) for doc in docs])
        if any(doc["_id"] in self.reject_whole for doc in docs):
            raise BadRequest("illegal_docid", status=400, error="illegal_docid", reason="bad id")
        return [self._answer(doc) for doc in docs]

    def _answer(self, doc: dict[str, Any]) -> BulkItemResult:
        error = self.refuse.get(doc["_id"])
        if error is not None:
            return BulkItemResult(id=doc["_id"], error=error, reason=f"{error} (scripted)")
        generation = int(str(doc["_rev"]).split("-", 1)[0]) + 1
        digest = hashlib.md5(repr(sorted(doc.items())).encode()).hexdigest()
        return BulkItemResult(id=doc["_id"], rev=f"{generation}-{digest}", ok=True)

    def get_attachment(self, db: str, doc_id: str, name: str, rev: str) -> tuple[bytes, str]:
        raise NotFound(f"{name} is missing")

    def db_info(self, db: str) -> dict[str, Any]:
        return {"db_name": db}

    def written(self, doc_id: str) -> list[dict[str, Any]]:
        """Every write of ``doc_id``, in order: winners (``_deleted`` absent) and tombstones."""
        return [doc for request in self.requests for doc in request if doc["_id"] == doc_id]
