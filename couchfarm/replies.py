"""Per-item replies, parsed one result per item: the leaves of each document read with ``_bulk_get``
or ``GET ?open_revs=``, and the results of each document written with ``_bulk_docs``.

A read can fail for one document inside a successful answer: CouchDB puts ``{"error": {...}}``
entries in a 200 ``_bulk_get`` answer (a missing document or revision, a shard that did not answer),
pouchdb-server answers ``{"missing": rev}`` and ``{}``, and an answer can simply lack a document.
None of these may read as "no conflict": :class:`LeafRead` keeps them, and the engine retries the
document instead of resolving it from a partial read (``couchfarm/resolution.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from couchfarm.models import BulkItemResult


@dataclass(frozen=True)
class LeafRead:
    """The leaves read for one document, and what went wrong reading them."""

    #: the leaves (deleted ones too), with ``_revisions``
    docs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  #: entries that were not a leaf: the read is partial
    gone: bool = False  #: the server answered 404 for the whole document: it does not exist

    @property
    def problem(self) -> str | None:
        """Why these leaves cannot be trusted, or None."""
        if self.errors:
            return "; ".join(self.errors)
        if not self.docs and not self.gone:
            return "the read returned no leaf"
        return None


def entry_error(entry: Any) -> str:
    """A readable line for a ``_bulk_get``/``open_revs`` entry that is not ``{"ok": doc}``."""
    if isinstance(entry, dict) and isinstance(entry.get("error"), dict):
        err = entry["error"]
        return f"{err.get('error')}: {err.get('reason')} (rev {err.get('rev')})"
    if isinstance(entry, dict) and "missing" in entry:
        return f"revision {entry['missing']} missing"
    return f"unexpected entry {entry!r:.80}"


def add_entries(docs: list[dict[str, Any]], errors: list[str], entries: list[Any]) -> None:
    """Sort entries into leaves (each rev once) and errors."""
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("ok"), dict):
            if all(d.get("_rev") != entry["ok"].get("_rev") for d in docs):
                docs.append(entry["ok"])
        else:
            errors.append(entry_error(entry))


def parse_bulk_get(payload: dict[str, Any], ids: list[str]) -> dict[str, LeafRead]:
    """One :class:`LeafRead` per requested id from a ``_bulk_get`` answer; an id the answer lacks
    reads as nothing (``problem`` says so)."""
    docs: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    errors: dict[str, list[str]] = {i: [] for i in ids}
    for result in payload.get("results", []):
        doc_id = result.get("id")
        if doc_id in docs:
            add_entries(docs[doc_id], errors[doc_id], list(result.get("docs") or []))
    return {i: LeafRead(docs[i], errors[i]) for i in ids}


def parse_open_revs(rows: list[Any]) -> LeafRead:
    """A :class:`LeafRead` from a ``GET ?open_revs=all`` answer (a JSON list)."""
    docs: list[dict[str, Any]] = []
    errors: list[str] = []
    add_entries(docs, errors, rows)
    return LeafRead(docs, errors)


def match_bulk_results(
    docs: list[dict[str, Any]], results: list[dict[str, Any]], *, missing_ok: bool = False
) -> list[BulkItemResult]:
    """One result per input doc, matched by id (repeated ids in order); ``missing_ok`` for
    ``new_edits=false``, where CouchDB lists only the failures."""
    queues: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        queues.setdefault(str(result.get("id")), []).append(result)
    out = []
    for doc in docs:
        queue = queues.get(doc.get("_id", ""), [])
        if queue:
            out.append(BulkItemResult.parse(queue.pop(0)))
        elif missing_ok:
            out.append(BulkItemResult(id=doc.get("_id", ""), rev=doc.get("_rev"), ok=True))
        else:
            out.append(
                BulkItemResult(
                    id=doc.get("_id", ""), error="missing_result", reason="the server sent no result"
                )
            )
    return out
