"""Manual one-shot sync through ``_replicator``: ``couchfarm replication sync SOURCE TARGET``.

Steps, in this order:

1. resolve each end: a topology node (couchfarm reaches it at ``url``, the other node at
   ``peer_url``, with the node's credentials) or a URL (credentials from its userinfo or from an
   environment variable holding ``user:password``);
2. check both databases from couchfarm, one request each, before anything is written: a missing
   source, a missing target without ``create_target`` and refused credentials end the sync here. A
   wrong password in a ``_replicator`` document is retried by CouchDB until the account locks (08c)
   and kills pouchdb-server outright; pouchdb-server also creates a missing target on its own where
   CouchDB fails the job, so the check gives both the same behaviour. An end couchfarm cannot reach
   is only a warning: the node that runs the sync may reach it;
3. write ``couchfarm-sync:{db}:{source}->{target}`` on the node that runs it (push: the source,
   pull: the target; both: one each way, each on its own source): created, or written again when it
   has finished (a finished document never runs again, 07a); a running one is followed as it is;
4. ``follow`` (in ``sync_follow.py``) reports progress until the job completes, fails or times out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal
from urllib.parse import urlsplit

from couchfarm.couch import CouchClient
from couchfarm.errors import ConfigError, CouchError, Forbidden, NotFound, Unauthorized, Unavailable
from couchfarm.redact import redact, register_secret, strip_userinfo
from couchfarm.replication.api import get_doc, put_doc
from couchfarm.replication.endpoints import client_for, node_tls
from couchfarm.replication.errors import SyncFailed
from couchfarm.replication.models import MARKER, parse_doc
from couchfarm.replication.render import Credential, endpoint, node_base, resolve_credentials
from couchfarm.replication.topology import Topology, unknown_node

SYNC_PREFIX = "couchfarm-sync:"
Mode = Literal["push", "pull", "both"]
FINISHED = ("completed", "failed", "error")  #: document states of a job that no longer runs


@dataclass(frozen=True)
class SyncEnd:
    """One end: ``client`` is how couchfarm reaches it, ``base`` how the other node does."""

    label: str  #: the node name, or host:port of a URL; part of the document id, never a secret
    client: CouchClient
    base: str
    cred: Credential | None = None


@dataclass(frozen=True)
class SyncJob:
    """One direction of one database, written in ``runner``'s ``_replicator``."""

    doc_id: str
    db: str
    source: SyncEnd
    target: SyncEnd
    runner: SyncEnd
    create_target: bool = False

    @property
    def route(self) -> str:
        return f"{self.source.label} -> {self.target.label}"


def resolve_end(
    spec: str, topo: Topology | None, env: Mapping[str, str], auth_env: str | None = None
) -> SyncEnd:
    """A node name of ``topo`` or an http(s) URL; ``auth_env`` names a variable with ``user:password``."""
    explicit = _env_credential(env, auth_env) if auth_env else None
    if topo is not None and spec in topo.nodes:
        node = topo.nodes[spec]
        cred = explicit or _node_credential(topo, spec, env)
        client = client_for(node.url, cred, tls=node_tls(topo, spec))
        return SyncEnd(spec, client, node_base(node), cred)
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        hint = f"; {unknown_node(spec, topo.nodes)}" if topo else " (or name a node of a --topology)"
        shown = redact(spec)
        raise ConfigError(f"{shown!r} is neither an http(s) URL nor a topology node{hint}", field=shown)
    return _url_end(spec, explicit, auth_env)


def _url_end(spec: str, explicit: Credential | None, auth_env: str | None) -> SyncEnd:
    parts = urlsplit(spec)
    base, user, password = strip_userinfo(spec.rstrip("/"))
    if explicit is not None and user is not None:
        raise ConfigError(f"credentials for {parts.hostname} are in the URL and in {auth_env}: give one")
    if user is not None and not password:
        raise ConfigError(f"{redact(spec)!r} names a user without a password", field=redact(spec))
    cred = explicit or (Credential("basic", user, password or "") if user is not None else None)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return SyncEnd(f"{parts.hostname}:{port}", client_for(base, cred), base, cred)


def _env_credential(env: Mapping[str, str], name: str | None) -> Credential:
    user, sep, secret = env.get(name or "", "").partition(":")
    if not sep or not user or not secret:
        raise ConfigError(f"environment variable {name} must hold user:password", field=str(name))
    register_secret(secret)
    return Credential("basic", user, secret)


def _node_credential(topo: Topology, name: str, env: Mapping[str, str]) -> Credential | None:
    """Only this node's variable is needed, not every node's."""
    return resolve_credentials(replace(topo, nodes={name: topo.nodes[name]}), env)[name]


def sync_id(db: str, source: SyncEnd, target: SyncEnd) -> str:
    return f"{SYNC_PREFIX}{db}:{source.label}->{target.label}"


def sync_jobs(
    source: SyncEnd, target: SyncEnd, dbs: list[str], mode: Mode, *, create_target: bool = False
) -> list[SyncJob]:
    """The jobs for ``mode``: push runs on the source, pull on the target, both one each way."""
    if not dbs:
        raise ConfigError("name the database(s) with --db (or give a --topology to sync all of its)")
    if source.label == target.label:
        raise ConfigError(f"source and target are the same server ({source.label})")
    pairs = [(source, target, target if mode == "pull" else source)]
    if mode == "both":
        pairs.append((target, source, target))
    return [
        SyncJob(sync_id(db, src, tgt), db, src, tgt, runner, create_target)
        for db in dbs
        for src, tgt, runner in pairs
    ]


def precheck(job: SyncJob) -> list[str]:
    """Both databases, from couchfarm; ``SyncFailed`` when the sync cannot work, warnings otherwise."""
    warnings = []
    for role, end in (("source", job.source), ("target", job.target)):
        try:
            end.client.db_info(job.db)
        except NotFound:
            if role == "target" and job.create_target:
                continue
            hint = "; pass --create-target to create it" if role == "target" else ""
            raise SyncFailed(
                f"the {role} database {job.db} does not exist on {end.label}{hint}", doc_id=job.doc_id
            ) from None
        except (Unauthorized, Forbidden) as exc:
            raise SyncFailed(
                f"{end.label} refused the credentials for {job.db} ({exc.status} {exc.reason}): not "
                "writing a replication that would repeat them (CouchDB locks an account after 5 failures)",
                doc_id=job.doc_id,
            ) from None
        except CouchError as exc:
            if end is job.runner and isinstance(exc, Unavailable):
                raise _runner_unreachable(job, role, exc) from None
            warnings.append(
                f"{job.doc_id}: cannot reach the {role} {end.label} from here ({type(exc).__name__}); "
                "the node that runs the sync may"
            )
    return warnings


def _runner_unreachable(job: SyncJob, role: str, exc: Unavailable) -> Unavailable:
    """The sync's document goes into the runner's ``_replicator``: without the runner, nothing can
    start, and the breaker's ``CircuitOpen`` on that write would not say which server is down."""
    other = "--pull (run on the target)" if role == "source" else "--push (run on the source)"
    return Unavailable(
        f"cannot reach the {role} {job.runner.label}, which would run {job.doc_id}: nothing was "
        f"written; retry when it is up, or use {other} ({redact(str(exc))[:200]})",
        url=exc.url,
        method=exc.method,
    )


def body_for(job: SyncJob, couchdb: bool) -> dict[str, Any]:
    """The one-shot document, credentials where the runner's flavour reads them; checked first."""
    body: dict[str, Any] = {
        "_id": job.doc_id,
        "source": endpoint(job.source.base, job.db, job.source.cred, couchdb=couchdb),
        "target": endpoint(job.target.base, job.db, job.target.cred, couchdb=couchdb),
        "continuous": False,
        MARKER: {"sync": True},
    }
    if job.create_target:
        body["create_target"] = True
    parse_doc(body, job.doc_id)
    return body


def start(job: SyncJob) -> str:
    """Write the document unless it runs already; says which: started, restarted or running."""
    client = job.runner.client
    current = get_doc(client, job.doc_id)
    marker = (current or {}).get(MARKER)
    if current is not None and not (isinstance(marker, dict) and marker.get("sync") is True):
        raise SyncFailed(
            f"{job.runner.label} holds a _replicator document {job.doc_id} that couchfarm did not write; "
            "it is left alone",
            doc_id=job.doc_id,
        )
    if current is not None and current.get("_replication_state") not in FINISHED:
        return "running"
    put_doc(client, body_for(job, client.is_couchdb), current["_rev"] if current else None)
    return "restarted" if current else "started"


def start_all(jobs: list[SyncJob], warn: Callable[[str], None]) -> dict[str, str]:
    """Check every job before writing any (a half-started ``--both`` helps nobody), then start them."""
    for job in jobs:
        for warning in precheck(job):
            warn(warning)
    return {job.doc_id: start(job) for job in jobs}
