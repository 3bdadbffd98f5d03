"""Declared replications -> ``_replicator`` bodies, with credentials where the server accepts them.

Credentials come from environment variables named in the topology; the caller passes the mapping
(the library never reads ``os.environ``). Every secret is registered with ``couchfarm.redact`` the
moment it is read, so no output, log line or error can show it.

CouchDB 3 takes an ``auth`` object (``{"basic": {...}}``) or headers (bearer token, session cookie);
pouchdb-server ignores the ``auth`` object and never processes such a document, so for it the
credentials go into the URL's userinfo, and other kinds of credentials cannot be expressed at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from couchfarm.redact import register_secret
from couchfarm.replication.errors import ReplicationBlocked
from couchfarm.replication.models import MARKER, parse_doc
from couchfarm.replication.topology import Node, Problems, Replication, Topology


@dataclass(frozen=True)
class Credential:
    """One node's credentials; ``repr`` never shows the secret."""

    kind: Literal["basic", "bearer", "cookie"]
    user: str | None
    secret: str

    def __repr__(self) -> str:
        return f"Credential({self.kind}, user={self.user!r})"

    def headers(self) -> dict[str, str]:
        """HTTP headers that carry a token or a cookie (basic credentials go on the session)."""
        if self.kind == "bearer":
            return {"Authorization": f"Bearer {self.secret}"}
        if self.kind == "cookie":
            return {"Cookie": self.secret}
        return {}


Credentials = dict[str, Credential | None]


def resolve_credentials(topo: Topology, env: Mapping[str, str]) -> Credentials:
    """Every node's credentials from ``env``; a missing or malformed variable is a ``TopologyError``
    naming the node's ``auth.env`` line."""
    problems = Problems(topo.source, topo.lines)
    out: Credentials = {}
    for name, node in topo.nodes.items():
        out[name] = None
        if node.auth is None:
            continue
        value, loc = env.get(node.auth.env, ""), ("nodes", name, "auth", "env")
        if not value:
            problems.add(loc, f"environment variable {node.auth.env} is not set ({_expected(node)})")
            continue
        if node.auth.type == "basic":
            user, sep, secret = value.partition(":")
            if not sep or not user or not secret:
                problems.add(loc, f"environment variable {node.auth.env} must hold user:password")
                continue
        else:
            user, secret = None, value
        register_secret(secret)
        out[name] = Credential(node.auth.type, user, secret)
    problems.raise_if_any()
    return out


def _expected(node: Node) -> str:
    assert node.auth is not None
    return {"basic": "user:password", "bearer": "a bearer token", "cookie": "a Cookie header value"}[
        node.auth.type
    ]


def node_base(node: Node) -> str:
    """How other nodes reach ``node`` (its ``peer_url``, else its ``url``)."""
    return node.peer_url or node.url


def endpoint(base: str, db: str, cred: Credential | None, *, couchdb: bool) -> str | dict[str, Any]:
    """A ``source``/``target`` value for a server of the given flavour."""
    url = f"{base.rstrip('/')}/{quote(db, safe='')}"
    if cred is None:
        return url
    if couchdb:
        if cred.kind == "basic":
            return {"url": url, "auth": {"basic": {"username": cred.user, "password": cred.secret}}}
        return {"url": url, "headers": cred.headers()}
    if cred.kind != "basic":
        raise ReplicationBlocked(
            f"pouchdb-server reads replication credentials only from URL userinfo; {cred.kind} "
            "credentials cannot be given to it"
        )
    return with_userinfo(url, cred.user or "", cred.secret)


def with_userinfo(url: str, user: str, password: str) -> str:
    """``url`` with ``user:password@`` (percent-encoded) in its authority."""
    parts = urlsplit(url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def render(
    rep: Replication,
    topo: Topology,
    creds: Credentials,
    *,
    couchdb: bool,
    marker: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The document for ``rep`` on a server of the given flavour; checked by our own model, so a
    rendering bug can never reach a server. ``ReplicationBlocked`` when the flavour cannot take it.
    ``marker`` replaces the default ``{"topology": name}`` (relay legs say which link they serve)."""
    body: dict[str, Any] = {
        "_id": rep.doc_id,
        "source": endpoint(node_base(topo.nodes[rep.source]), rep.db, creds.get(rep.source), couchdb=couchdb),
        "target": endpoint(node_base(topo.nodes[rep.target]), rep.db, creds.get(rep.target), couchdb=couchdb),
        "continuous": rep.continuous,
        **rep.options,
        MARKER: marker or {"topology": topo.name},
    }
    parse_doc(body, rep.doc_id)
    return body
