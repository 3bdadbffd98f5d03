"""The replicator's HTTP endpoints, and a database's ``_security``, on an injected ``CouchClient``.

Kept next to the control plane instead of on ``CouchClient`` because only it uses them. Each
function's docstring is its HTTP contract. Endpoints pouchdb-server lacks (``_scheduler/*``,
``_local_docs``) answer ``None`` there, and the caller falls back (see ``status.py``), saying so in a
debug log (docs/couchdb-notes.md).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from couchfarm.couch import CouchClient
from couchfarm.errors import BadRequest, NotFound
from couchfarm.http import quote_id

log = logging.getLogger("couchfarm.replication")
REPLICATOR = "_replicator"
PAGE = 500


def replicator_docs(client: CouchClient, prefix: str | None = None) -> list[dict[str, Any]]:
    """``GET /_replicator/_all_docs?include_docs=true`` (only ids starting with ``prefix`` if given).

    Design documents are left out; a missing ``_replicator`` database (404) reads as empty.
    """
    params: dict[str, Any] = {"include_docs": True}
    if prefix is not None:
        params.update(startkey=json.dumps(prefix), endkey=json.dumps(prefix + "\ufff0"))
    try:
        rows = client.http.request("GET", f"{REPLICATOR}/_all_docs", params=params).json()["rows"]
    except NotFound:
        return []
    return [r["doc"] for r in rows if r.get("doc") and not r["id"].startswith("_design/")]


def get_doc(client: CouchClient, doc_id: str) -> dict[str, Any] | None:
    """``GET /_replicator/{id}``; None when absent or deleted."""
    try:
        doc: dict[str, Any] = client.get(REPLICATOR, doc_id)
        return doc
    except NotFound:
        return None


def put_doc(client: CouchClient, body: dict[str, Any], rev: str | None = None) -> str:
    """``PUT /_replicator/{id}`` (with ``rev`` to replace); returns the new rev. 409 ``Conflict``;
    403 ``Forbidden`` (CouchDB: a field it refuses; pouchdb-server: a running job); 404 creates the
    ``_replicator`` database first (a fresh CouchDB may not have one yet)."""
    doc = {k: v for k, v in body.items() if k != "_rev"}
    if rev is not None:
        doc["_rev"] = rev
    try:
        return str(client.put(REPLICATOR, doc)["rev"])
    except NotFound:
        client.create_db(REPLICATOR)
        return str(client.put(REPLICATOR, doc)["rev"])


def delete_doc(client: CouchClient, doc_id: str, rev: str) -> None:
    """``DELETE /_replicator/{id}?rev=``; 409 ``Conflict`` when ``rev`` is stale.

    On CouchDB this cancels the job. Never call it for a *running* job on pouchdb-server: its
    replicator re-reads the deleted document and the process dies (docs/couchdb-notes.md §7).
    """
    client.http.request("DELETE", f"{REPLICATOR}/{quote_id(doc_id)}", params={"rev": rev})


def scheduler_docs(client: CouchClient) -> list[dict[str, Any]] | None:
    """``GET /_scheduler/docs/_replicator`` in pages: one entry per document with ``state``, ``info``
    (stats, or ``{"error": ...}``), ``error_count``, ``last_updated``. None where the server has no
    scheduler (pouchdb-server: 404 ``no_db_file``)."""
    out: list[dict[str, Any]] = []
    while True:
        page = _optional(client, f"_scheduler/docs/{REPLICATOR}", {"limit": PAGE, "skip": len(out)})
        if page is None:
            return out or None
        docs = page.get("docs", [])
        out.extend(docs)
        if len(docs) < PAGE:
            return out


def scheduler_jobs(client: CouchClient) -> list[dict[str, Any]] | None:
    """``GET /_scheduler/jobs``: running and backing-off jobs with their ``history`` (``crashed``
    entries carry the reason). Completed one-shot jobs are not listed. None without a scheduler."""
    out: list[dict[str, Any]] = []
    while True:
        page = _optional(client, "_scheduler/jobs", {"limit": PAGE, "skip": len(out)})
        if page is None:
            return out or None
        jobs = page.get("jobs", [])
        out.extend(jobs)
        if len(jobs) < PAGE:
            return out


def scheduler_doc(client: CouchClient, doc_id: str) -> dict[str, Any] | None:
    """``GET /_scheduler/docs/_replicator/{id}``; None when unknown or without a scheduler."""
    return _optional(client, f"_scheduler/docs/{REPLICATOR}/{quote_id(doc_id)}", None)


def local_docs(client: CouchClient, db: str) -> list[dict[str, Any]] | None:
    """``GET /{db}/_local_docs?include_docs=true`` (checkpoints live there); None where missing."""
    page = _optional(client, f"{quote_id(db)}/_local_docs", {"include_docs": True})
    return None if page is None else [r["doc"] for r in page.get("rows", []) if r.get("doc")]


def _optional(client: CouchClient, path: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = client.http.request("GET", path, params=params).json()
        return result
    except (NotFound, BadRequest) as exc:
        log.debug("%s: GET /%s answered %s; using the fallback", client.url, path, exc.status)
        return None


def get_security(client: CouchClient, db: str) -> dict[str, Any] | None:
    """``GET /{db}/_security``; None when the database does not exist (404). A database that never
    had one answers ``{}`` (pouchdb-server) or CouchDB 3's admin-only default (recorded in 08)."""
    try:
        result: dict[str, Any] = client.http.request("GET", f"{quote_id(db)}/_security").json()
        return result
    except NotFound:
        return None


def put_security(client: CouchClient, db: str, body: dict[str, Any]) -> None:
    """``PUT /{db}/_security`` (no revision: the object is replaced as a whole); 401/403 when the
    client is not an admin of the database, 404 ``NotFound`` when it does not exist."""
    client.http.request("PUT", f"{quote_id(db)}/_security", body=body)
