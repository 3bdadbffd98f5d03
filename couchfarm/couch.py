"""A CouchDB 3.x client on an injected ``requests.Session``.

The HTTP contract of each method is in its docstring. Statuses map to errors in one place
(``couchfarm.errors.error_for_status``): 400/412/413/415/417 ``BadRequest``, 401 ``Unauthorized``,
403 ``Forbidden``, 404 ``NotFound``, 409 ``Conflict``, 5xx/429/network ``Unavailable`` (retried first).
Where pouchdb-server (the test server) lacks a CouchDB feature the client degrades to a path that
works on both and says so in a debug log (the differences are listed in docs/couchdb-notes.md).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests
import urllib3

from couchfarm.errors import (
    BadRequest,
    Conflict,
    CouchError,
    Forbidden,
    NotCouchDB,
    NotFound,
    Unauthorized,
    Unavailable,
)
from couchfarm.feeds import ChangeRow, ChangesPage, FeedEnd, LineSplitter, Seq, parse_continuous_line
from couchfarm.http import Transport, quote_id
from couchfarm.models import BulkItemResult
from couchfarm.reads import read_known_leaves, read_revisions
from couchfarm.replies import LeafRead, match_bulk_results, parse_bulk_get, parse_open_revs

log = logging.getLogger("couchfarm.couch")
STREAM_HEADERS = {"Accept-Encoding": "identity"}


class CouchClient:
    """Methods for the CouchDB endpoints couchfarm uses, on one server."""

    def __init__(self, url: str, *, transport: Transport | None = None, **transport_options: Any) -> None:
        self.http = transport or Transport(url, **transport_options)
        self.url = self.http.base
        self._info: dict[str, Any] | None = None
        self.read_workers = max(1, self.http.session.adapters["http://"]._pool_maxsize)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"CouchClient({self.url!r})"

    # -- server ---------------------------------------------------------------------------------

    def server_info(self) -> dict[str, Any]:
        """``GET /``. Cached; pouchdb-server answers ``{"express-pouchdb": "Welcome", ...}``."""
        if self._info is None:
            self._info = self.http.request("GET", "").json()
        return self._info

    def check_server(self) -> dict[str, Any]:
        """``GET /`` once (cached), before a command's first real request: a URL that reaches some
        other HTTP server would otherwise surface as a baffling ``404 File not found`` on a database.

        ``NotCouchDB`` unless the answer is a JSON object naming ``couchdb`` (Apache CouchDB) or
        ``express-pouchdb`` (pouchdb-server); a final 4xx there (404, 405...) means the same.
        401, 403 and ``Unavailable`` are raised as they are: the server may well be CouchDB.
        """
        try:
            info = self.server_info()
        except (Unauthorized, Forbidden, Unavailable):
            raise
        except CouchError as exc:
            raise self._not_couchdb(f"GET / answered {exc.status} {exc.error}".rstrip()) from None
        except ValueError:
            raise self._not_couchdb("GET / did not answer JSON") from None
        if not isinstance(info, dict) or not {"couchdb", "express-pouchdb"} & set(info):
            self._info = None
            raise self._not_couchdb("GET / did not answer CouchDB's welcome object")
        return info

    def _not_couchdb(self, why: str) -> NotCouchDB:
        return NotCouchDB(f"{self.url} is not a CouchDB server: {why}", method="GET", url=self.url)

    @property
    def is_couchdb(self) -> bool:
        """Whether the server is Apache CouchDB 2+ (else a CouchDB-API server such as pouchdb-server)."""
        info = self.server_info()
        version = str(info.get("version", "0"))
        return "couchdb" in info and version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 2

    def all_dbs(self) -> list[str]:
        """``GET /_all_dbs`` (admin only on CouchDB 3)."""
        result: list[str] = self.http.request("GET", "_all_dbs").json()
        return result

    def db_updates(self, since: Seq = None, timeout_ms: int = 10_000) -> ChangesPage | None:
        """``GET /_db_updates`` as a longpoll page, or None where the server lacks it.

        CouchDB answers 404 without ``_global_changes`` (single node) and pouchdb-server 400: both
        mean "poll ``_all_dbs`` instead". Rows carry the database name in ``id`` and the event
        (``created``/``updated``/``deleted``) in ``revs[0]``.
        """
        params = {"feed": "longpoll", "timeout": timeout_ms, "since": since}
        try:
            resp = self.http.request(
                "GET", "_db_updates", params=params, timeout=(self.http.timeout[0], timeout_ms / 1000 + 5)
            )
        except (NotFound, BadRequest):
            log.debug("%s has no _db_updates; polling _all_dbs instead", self.url)
            return None
        payload = resp.json()
        rows = [
            ChangeRow(id=r["db_name"], seq=r.get("seq"), revs=(r.get("type", ""),))
            for r in payload.get("results", [])
        ]
        return ChangesPage(results=rows, last_seq=payload.get("last_seq"))

    # -- databases ------------------------------------------------------------------------------

    def db_info(self, db: str) -> dict[str, Any]:
        """``GET /{db}``; 404 ``NotFound``. ``update_seq`` is an opaque seq."""
        result: dict[str, Any] = self.http.request("GET", quote_id(db)).json()
        return result

    def create_db(self, db: str, *, exist_ok: bool = True) -> bool:
        """``PUT /{db}``; 412 means it exists (False when ``exist_ok``, else ``BadRequest``)."""
        try:
            self.http.request("PUT", quote_id(db))
            return True
        except BadRequest as exc:
            if exist_ok and exc.status == 412:
                return False
            raise

    def delete_db(self, db: str) -> None:
        """``DELETE /{db}``; 404 ``NotFound``."""
        self.http.request("DELETE", quote_id(db))

    # -- documents ------------------------------------------------------------------------------

    def get(self, db: str, doc_id: str, **params: Any) -> Any:
        """``GET /{db}/{id}`` with ``conflicts``, ``revs``, ``rev``, ``open_revs``, ``latest``...

        404 ``NotFound`` (missing doc, deleted doc without ``rev``, unknown rev). ``open_revs``
        answers a JSON list because ``Accept: application/json`` is always sent (CouchDB answers
        ``multipart/mixed`` otherwise, even to ``*/*``).
        """
        return self.http.request("GET", f"{quote_id(db)}/{quote_id(doc_id)}", params=params).json()

    def put(self, db: str, doc: dict[str, Any]) -> dict[str, Any]:
        """``PUT /{db}/{id}``; 409 ``Conflict``, 403 ``Forbidden``, 401 ``Unauthorized``."""
        result: dict[str, Any] = self.http.request(
            "PUT", f"{quote_id(db)}/{quote_id(doc['_id'])}", body=doc
        ).json()
        return result

    def open_revs(self, db: str, doc_id: str, revs: str | list[str] = "all") -> list[dict[str, Any]]:
        """Every requested leaf (deleted ones too) with ``_revisions``; missing revs are skipped.

        404 on the whole document becomes an empty list (the document is gone: nothing to resolve).
        """
        try:
            rows = self.get(db, doc_id, open_revs=revs, revs=True)
        except NotFound:
            return []
        return [row["ok"] for row in rows if "ok" in row]

    def read_leaves(self, db: str, doc_ids: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """All leaves (deleted ones too, with ``_revisions``) of each document, in one bulk read.

        A document that does not exist, or whose read failed, maps to ``[]``; the engine uses
        :meth:`read_leaf_sets`, which tells the two apart.
        """
        return {doc_id: read.docs for doc_id, read in self.read_leaf_sets(db, doc_ids).items()}

    def read_leaf_sets(
        self, db: str, doc_ids: Iterable[str], known: dict[str, list[str]] | None = None
    ) -> dict[str, LeafRead]:
        """Every leaf of each document and the errors met reading them, in one bulk read.

        ``known`` (doc id -> the leaf revs the feed listed) lets other servers read in two requests
        instead of one per document (couchfarm/reads.py).

        CouchDB 2+: one ``POST _bulk_get?revs=true`` with ``{"id"}`` entries, which CouchDB answers
        with every leaf; per-document ``{"error": ...}`` entries inside the 200 are kept as errors.
        Other servers (pouchdb-server answers only the winner there): concurrent
        ``GET ?open_revs=all&revs=true``, where a 404 means the document does not exist (``gone``)
        and a transient failure of one request is an error of that document only. A whole
        ``_bulk_get`` that fails raises (``Unavailable`` when transient).
        """
        ids = list(dict.fromkeys(doc_ids))
        if not ids:
            return {}
        if self.is_couchdb:
            resp = self.http.request(
                "POST",
                f"{quote_id(db)}/_bulk_get",
                params={"revs": True},
                body={"docs": [{"id": i} for i in ids]},
            )
            return parse_bulk_get(resp.json(), ids)
        if known and all(i in known for i in ids):
            return read_known_leaves(self.http, db, {i: known[i] for i in ids})
        log.debug("%s: reading leaves with open_revs=all (server's _bulk_get gives winners only)", self.url)
        with ThreadPoolExecutor(max_workers=min(self.read_workers, len(ids))) as pool:
            return dict(zip(ids, pool.map(lambda i: self._open_revs_read(db, i), ids), strict=True))

    def read_revisions(self, db: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """Explicit revisions' bodies in one ``_bulk_get`` (couchfarm/reads.py ``read_revisions``)."""
        return read_revisions(self.http, db, pairs)

    def _open_revs_read(self, db: str, doc_id: str) -> LeafRead:
        try:
            return parse_open_revs(self.get(db, doc_id, open_revs="all", revs=True))
        except NotFound:
            return LeafRead(gone=True)
        except Unavailable as exc:
            return LeafRead(errors=[f"read failed: {exc}"])

    def revs_deleted(self, db: str, doc_id: str, revs: list[str]) -> dict[str, bool]:
        """Whether each of ``revs`` (leaves or not) is a deletion, for the revisions whose body this
        server still has: ``GET ?open_revs=[...]`` answers ``{"missing": rev}`` for a revision that
        compaction or ``_revs_limit`` emptied (CouchDB and pouchdb-server alike); those are left out.
        """
        if not revs:
            return {}
        return {doc["_rev"]: bool(doc.get("_deleted")) for doc in self.open_revs(db, doc_id, revs)}

    def bulk_docs(
        self, db: str, docs: list[dict[str, Any]], *, new_edits: bool = True
    ) -> list[BulkItemResult]:
        """``POST /{db}/_bulk_docs``: one ``BulkItemResult`` per input doc, in input order.

        Never raises for one bad item: 409/403/401 and others come back as items. Results are
        matched by id, not position (pouchdb-server reorders them when a validate_doc_update runs;
        repeated ids are matched in order). With ``new_edits=False`` CouchDB returns only errors, so
        an unmatched doc is ok. Raises ``BadRequest`` when the server rejects the whole request
        (illegal id, ``missing_stub`` 412, 417); the caller isolates the bad document.
        """
        if not docs:
            return []
        body: dict[str, Any] = {"docs": docs}
        if not new_edits:
            body["new_edits"] = False
        results = self.http.request("POST", f"{quote_id(db)}/_bulk_docs", body=body).json()
        return match_bulk_results(docs, results, missing_ok=not new_edits)

    def get_attachment(self, db: str, doc_id: str, name: str, rev: str) -> tuple[bytes, str]:
        """``GET /{db}/{id}/{name}?rev=``: the raw bytes and their content type; 404 ``NotFound``."""
        resp = self.http.request(
            "GET", _attachment_path(db, doc_id, name), params={"rev": rev}, headers={"Accept": "*/*"}
        )
        return resp.content, resp.headers.get("Content-Type", "application/octet-stream")

    def all_docs(self, db: str, **params: Any) -> list[dict[str, Any]]:
        """``GET /{db}/_all_docs`` rows (``startkey``/``endkey``/``include_docs``... JSON-encoded)."""
        for key in ("startkey", "endkey", "key"):
            if key in params:
                params[key] = json.dumps(params[key])
        rows: list[dict[str, Any]] = self.http.request(
            "GET", f"{quote_id(db)}/_all_docs", params=params
        ).json()["rows"]
        return rows

    # -- _local documents -----------------------------------------------------------------------

    def get_local(self, db: str, name: str) -> dict[str, Any] | None:
        """``GET /{db}/_local/{name}``, None when absent."""
        try:
            doc: dict[str, Any] = self.get(db, f"_local/{name}")
            return doc
        except NotFound:
            return None

    def put_local(self, db: str, name: str, body: dict[str, Any], rev: str | None = None) -> str:
        """Write a ``_local`` doc, always sending its current ``_rev`` (pouchdb enforces it, CouchDB 3
        ignores it); returns the new rev. With ``rev`` (what the caller's last read or write returned,
        ``""`` when it saw none) it is one request; when that rev is no longer current (409), the
        current one is read and sent."""
        doc = {k: v for k, v in body.items() if not k.startswith("_")}
        doc["_id"] = f"_local/{name}"
        if rev is not None:
            try:
                return str(self.put(db, {**doc, **({"_rev": rev} if rev else {})})["rev"])
            except Conflict:
                pass
        current = self.get_local(db, name)
        if current is not None:
            doc["_rev"] = current["_rev"]
        return str(self.put(db, doc)["rev"])

    def delete_local(self, db: str, name: str) -> bool:
        """Delete a ``_local`` doc (with its current rev); False when it did not exist."""
        current = self.get_local(db, name)
        if current is None:
            return False
        path = f"{quote_id(db)}/{quote_id('_local/' + name)}"
        try:
            self.http.request("DELETE", path, params={"rev": current["_rev"]})
        except NotFound:
            return False
        return True

    # -- _changes -------------------------------------------------------------------------------

    def changes(
        self,
        db: str,
        *,
        feed: str = "normal",
        since: Seq = None,
        deadline: float = 60.0,
        heartbeat: int | None = None,
        **options: Any,
    ) -> ChangesPage:
        """A normal or longpoll ``_changes`` page.

        ``options``: ``limit``, ``style``, ``include_docs``, ``conflicts``, ``doc_ids`` (→ ``_doc_ids``
        filter, POST body), ``selector`` (→ ``_selector`` filter), ``timeout`` (ms, server side).
        ``deadline`` (s) is enforced by the client because some servers ignore ``timeout`` and hold
        a longpoll open forever; a longpoll cut by it returns an empty page with ``last_seq=since``
        and ``timed_out=True``. 400 on a malformed ``since``.
        """
        if feed not in ("normal", "longpoll"):
            raise ValueError(f"changes() reads normal or longpoll feeds, not {feed!r}; use stream_changes()")
        for attempt in range(self.http.retry.attempts):
            if attempt:  # the stream dropped: a feed read is idempotent, so read it again
                self.http.sleep(self.http.retry.delay(attempt - 1))
            resp = self._changes_request(db, feed, since, heartbeat, deadline, dict(options))
            try:
                raw, complete = _read_until(resp, time.monotonic() + deadline)
                break
            except Unavailable:
                if attempt + 1 == self.http.retry.attempts:
                    raise
            finally:
                resp.close()
        if not complete:
            if feed == "longpoll":
                return ChangesPage(results=[], last_seq=since, timed_out=True)
            raise Unavailable(f"_changes on {db} did not finish within {deadline}s", method="GET")
        return ChangesPage.parse(_loads(raw))

    def stream_changes(
        self,
        db: str,
        *,
        since: Seq = None,
        deadline: float = 60.0,
        heartbeat: int | None = 10_000,
        limit: int | None = None,
        **options: Any,
    ) -> Iterator[ChangeRow | FeedEnd]:
        """A continuous feed: rows as they arrive, ending at the server's final line, at ``limit``
        rows (enforced here too: pouchdb-server ignores it) or at the client ``deadline``.

        Sends ``Accept-Encoding: identity`` (compressed streams are buffered by some servers) and
        closes the socket to end the feed. With ``heartbeat`` set CouchDB never ends the feed itself.
        """
        resp = self._changes_request(db, "continuous", since, heartbeat, deadline, dict(options, limit=limit))
        end = time.monotonic() + deadline
        splitter, count = LineSplitter(), 0
        try:
            for chunk in _chunks(resp, end):
                for line in splitter.feed(chunk):
                    item = parse_continuous_line(line)
                    yield item
                    count += isinstance(item, ChangeRow)
                    if isinstance(item, FeedEnd) or (limit is not None and count >= limit):
                        return
        finally:
            resp.close()

    def _changes_request(
        self, db: str, feed: str, since: Seq, heartbeat: int | None, deadline: float, options: dict[str, Any]
    ) -> requests.Response:
        params: dict[str, Any] = {"feed": feed, "since": since, "heartbeat": heartbeat}
        body: dict[str, Any] | None = None
        doc_ids, selector = options.pop("doc_ids", None), options.pop("selector", None)
        if doc_ids is not None:
            params["filter"], body = "_doc_ids", {"doc_ids": list(doc_ids)}
        elif selector is not None:
            params["filter"] = "_selector"
            if self.is_couchdb:
                body = {"selector": selector}
            else:
                log.debug("%s: sending the selector in the query string (server ignores the body)", self.url)
                params["selector"] = selector
        params.update(options)
        method = "POST" if body is not None else "GET"
        return self.http.request(
            method,
            f"{quote_id(db)}/_changes",
            params=params,
            body=body,
            stream=True,
            timeout=(self.http.timeout[0], max(0.5, deadline)),
            headers=STREAM_HEADERS,
        )

    # -- views ----------------------------------------------------------------------------------

    def view(self, db: str, ddoc: str, name: str, **params: Any) -> list[dict[str, Any]]:
        """``GET /{db}/_design/{ddoc}/_view/{name}``: the rows (``id``, ``key``, ``value``).

        ``key``/``startkey``/``endkey`` are sent as JSON; ``limit``, ``skip``, ``include_docs``...
        as given. 404 ``NotFound`` when the database, the design document or the view is missing;
        400 ``BadRequest`` for bad parameters; 500 (a map function that fails) ``Unavailable``.
        """
        for key in ("startkey", "endkey", "key"):
            if key in params:
                params[key] = json.dumps(params[key])
        path = f"{quote_id(db)}/_design/{quote(ddoc, safe='')}/_view/{quote(name, safe='')}"
        rows: list[dict[str, Any]] = self.http.request("GET", path, params=params).json()["rows"]
        return rows


def _chunks(resp: requests.Response, end: float) -> Iterator[bytes]:
    """Bytes of a streamed body as they arrive, until it ends or the wall-clock ``end`` passes.

    ``read1`` returns whatever has arrived (one heartbeat is enough), so the deadline is checked
    even when a server, or a proxy that turned the chunked stream into a close-delimited one,
    keeps trickling heartbeats and never ends the response.
    """
    try:
        while True:
            data = resp.raw.read1(65536)
            if not data:
                return
            yield data
            if time.monotonic() >= end:
                return
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if time.monotonic() < end - 0.05:
            raise Unavailable(f"feed connection dropped: {type(exc).__name__}", method="GET") from None


def _read_until(resp: requests.Response, end: float) -> tuple[bytes, bool]:
    """The whole body, and whether it was complete before ``end`` (else a client-side cut)."""
    parts: list[bytes] = []
    for chunk in _chunks(resp, end):
        parts.append(chunk)
    raw = b"".join(parts)
    try:
        _loads(raw)
        return raw, True
    except ValueError:
        return raw, False


def _loads(raw: bytes) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(raw)
    return payload


def _attachment_path(db: str, doc_id: str, name: str) -> str:
    return f"{quote_id(db)}/{quote_id(doc_id)}/{'/'.join(quote(p, safe='') for p in name.split('/'))}"
