"""What the engine, the archive and manual resolution need from a CouchDB server, as typed seams.

``couchfarm.couch.CouchClient`` is the one implementation that talks to a server; its methods carry
the HTTP contract (which statuses become which errors, couchfarm/errors.py). These protocols name the
subset each consumer uses, so that a consumer states what it depends on and a unit test can hand it a
fake (tests/engine/fakecouch.py). A fake only serves tests of couchfarm's own logic: how CouchDB
behaves is tested against a real CouchDB-API server and recorded CouchDB replies (docs/couchdb-notes.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from couchfarm.models import BulkItemResult
from couchfarm.replies import LeafRead


class EngineCouch(Protocol):
    """What ``couchfarm.resolution.Engine`` reads and writes (``CouchClient`` documents each call)."""

    def read_leaf_sets(
        self, db: str, doc_ids: Iterable[str], known: dict[str, list[str]] | None = None
    ) -> dict[str, LeafRead]: ...

    def get(self, db: str, doc_id: str, **params: Any) -> Any: ...

    def revs_deleted(self, db: str, doc_id: str, revs: list[str]) -> dict[str, bool]: ...

    def read_revisions(self, db: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]: ...

    def bulk_docs(
        self, db: str, docs: list[dict[str, Any]], *, new_edits: bool = True
    ) -> list[BulkItemResult]: ...

    def get_attachment(self, db: str, doc_id: str, name: str, rev: str) -> tuple[bytes, str]: ...

    def db_info(self, db: str) -> dict[str, Any]: ...


class ArchiveCouch(Protocol):
    """What ``couchfarm.archive`` needs: the audit database, and the documents ``undo`` restores."""

    @property
    def url(self) -> str: ...

    def create_db(self, db: str, *, exist_ok: bool = True) -> bool: ...

    def all_docs(self, db: str, **params: Any) -> list[dict[str, Any]]: ...

    def read_leaves(self, db: str, doc_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]: ...

    def put(self, db: str, doc: dict[str, Any]) -> dict[str, Any]: ...

    def bulk_docs(
        self, db: str, docs: list[dict[str, Any]], *, new_edits: bool = True
    ) -> list[BulkItemResult]: ...
