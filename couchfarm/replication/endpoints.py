"""Clients for topology nodes and for the two ends of a replication, and checkpoint ids.

A replication's ends are reached with the credentials its own document carries, so ``status`` and
``rescan`` work on any ``_replicator`` document, not only on ones couchfarm wrote. Where a topology
says a node is reached by peers at ``peer_url`` but by couchfarm at ``url``, the end is mapped back.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from couchfarm.breaker import CircuitBreaker, RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError
from couchfarm.http import make_session
from couchfarm.redact import redact_url, register_secret, strip_userinfo
from couchfarm.replication.models import endpoint_url
from couchfarm.replication.render import Credential, Credentials
from couchfarm.replication.topology import Topology
from couchfarm.tls import TLSFiles

CONTROL_TIMEOUT = (3.05, 30.0)
PROBE_TIMEOUT = (2.0, 5.0)


def client_for(
    url: str,
    cred: Credential | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: tuple[float, float] = CONTROL_TIMEOUT,
    attempts: int = 3,
    tls: TLSFiles | None = None,
) -> CouchClient:
    """A client for one server; basic credentials go on the session, tokens and cookies in headers;
    ``tls`` (a node's ``tls:`` files, or the settings') is checked now, before any connection."""
    base, user, password = strip_userinfo(url)
    files = (tls or TLSFiles.for_settings("couch")).prepare(base)
    if cred is not None and cred.kind == "basic":
        user, password = cred.user, cred.secret
    extra = {**(cred.headers() if cred else {}), **(headers or {})}
    for key, value in extra.items():
        if key.lower() in ("authorization", "cookie"):
            register_secret(value.split(" ", 1)[-1])
    session = make_session(4, user, password, files.requests_verify(), files.requests_cert())
    session.headers.update(extra)
    return CouchClient(
        base,
        session=session,
        timeout=timeout,
        retry=RetryPolicy(attempts, 0.2, 2.0),
        breaker=CircuitBreaker(5, 10.0),
        tls=files,
    )


def node_clients(topo: Topology, creds: Credentials) -> dict[str, CouchClient]:
    """One client per topology node, at the URL couchfarm uses (``url``, not ``peer_url``)."""
    return {
        name: client_for(node.url, creds.get(name), tls=node_tls(topo, name))
        for name, node in topo.nodes.items()
    }


def node_tls(topo: Topology, name: str) -> TLSFiles | None:
    """The node's ``tls:`` files, named by their topology keys for messages (None: the defaults)."""
    spec = topo.nodes[name].tls
    return spec.files(name) if spec is not None else None


@dataclass
class End:
    """One end of a replication: a server, a database on it, and how it was named (masked)."""

    client: CouchClient
    db: str
    shown: str
    raw_db: str = ""  #: the database as written in the URL path

    @property
    def js_db(self) -> str:
        """The name as pouchdb's http adapter keeps it (encodeURIComponent unless already encoded)."""
        raw = self.raw_db or self.db
        return raw if "%" in raw else quote(raw, safe="!'()*")

    def probe(self) -> str | None:
        """None when the database answers, else why not (as seen from couchfarm, not from the node)."""
        try:
            self.client.db_info(self.db)
            return None
        except CouchError as exc:
            return f"{self.shown} unreachable from couchfarm: {type(exc).__name__} {exc.reason or exc}"


def end_of(value: Any, topo: Topology | None = None, creds: Credentials | None = None) -> End | None:
    """The ``End`` for a document's ``source``/``target`` value (None when it is not a URL)."""
    url = endpoint_url(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.path.strip("/"):
        return None
    server_path, _, db = parts.path.rstrip("/").rpartition("/")
    server = urlunsplit((parts.scheme, parts.netloc, server_path, "", ""))
    headers = value.get("headers") if isinstance(value, dict) else None
    basic = value.get("auth", {}).get("basic") if isinstance(value, dict) else None
    cred = Credential("basic", basic["username"], basic["password"]) if isinstance(basic, dict) else None
    mapped = _topology_node(server, topo)
    tls = None
    if mapped is not None and topo is not None:
        cred = (creds or {}).get(mapped) or cred
        server = topo.nodes[mapped].url
        tls = node_tls(topo, mapped)
    client = client_for(server, cred, headers, timeout=PROBE_TIMEOUT, attempts=1, tls=tls)
    return End(client, unquote(db), redact_url(url), db)


def _topology_node(server: str, topo: Topology | None) -> str | None:
    if topo is None:
        return None
    plain = strip_userinfo(server)[0].rstrip("/")
    for name, node in topo.nodes.items():
        if plain in (node.url, node.peer_url):
            return name
    return None


def pouch_checkpoint_id(source: End, target: End, doc: dict[str, Any]) -> str:
    """The ``_local`` id pouchdb-server's replicator checkpoints under (pouchdb-generate-replication-id):
    md5 of both servers' uuids and db names plus the filter parameters, base64 with '/'->'.', '+'->'_'.
    """
    parts = [
        str(source.client.server_info().get("uuid", "")) + source.js_db,
        str(target.client.server_info().get("uuid", "")) + target.js_db,
        str(doc.get("filter") or ""),
    ]
    if doc.get("filter") and doc.get("query_params"):
        parts.append(json.dumps(dict(sorted(doc["query_params"].items())), separators=(",", ":")))
    parts.append(",".join(sorted(doc.get("doc_ids") or [])))
    if doc.get("selector"):
        parts.append(json.dumps(doc["selector"], separators=(",", ":"), ensure_ascii=False))
    digest = base64.b64encode(hashlib.md5("".join(parts).encode("latin-1", "replace")).digest()).decode()
    return digest.replace("/", ".").replace("+", "_")


def couch_checkpoint_id(replication_id: str | None) -> str | None:
    """CouchDB checkpoints under ``_local/<base id>``: the job id without its ``+continuous...`` tail."""
    return replication_id.split("+", 1)[0] if replication_id else None
