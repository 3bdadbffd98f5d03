"""Relay fallback: a direct link that keeps failing is carried through a relay node until it recovers.

A link may name relays (``via: [relay-1, relay-2]``). ``watch`` hands every poll to ``Relays.step``:

1. a direct link ``crashing``/``failed``/``error`` for ``relay_after`` seconds (the link's own, else
   ``--relay-after``) is relayed through the first relay whose copy of the database answers: two
   one-shot legs, source -> relay and relay -> target, both in the relay's ``_replicator`` (couchfarm
   has just reached that node). A credential refusal is never relayed: the legs would present the
   same credentials and only add failed logins towards CouchDB's account lockout;
2. while relayed, a leg that has completed is written again, so it runs again on the next changes;
3. when the direct target answers again, the direct link is restarted if the server needs it and
   the legs retire: each is deleted once it is not running.

Every switch is an ``Event`` of kind ``relay_switch`` (log line, metric and webhook through the
watch's sinks) and counts in ``couchfarm_replication_relay_switches_total{farm, link, to}``.

Why the legs are one-shot, re-run by the watch: pouchdb-server refuses to edit a running job and
dies when one is deleted, but a one-shot leg stops by itself once it has caught up, so it can always
be retired, on CouchDB and pouchdb-server alike; the price is a delay of one poll per hop. The
direct document is never deleted on pouchdb-server: it retries by itself (with a backoff of at most
ten minutes) and resumes from its checkpoint; while relayed it does not alert on every crash. On
CouchDB, which backs off crashed jobs for longer and longer, it is deleted and written again on
recovery, so it starts at once (from its checkpoint). Leg ids: ``couchfarm-relay:{db}:{a}->{b}...:
via-{relay}:1`` and ``:2``; ``plan`` only reads ``couchfarm:`` ids, so it never prunes a leg.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from couchfarm import metrics
from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError
from couchfarm.redact import redact
from couchfarm.replication.api import delete_doc, get_doc, put_doc
from couchfarm.replication.endpoints import PROBE_TIMEOUT, client_for, node_tls
from couchfarm.replication.errors import ReplicationBlocked
from couchfarm.replication.models import strip_server_fields
from couchfarm.replication.plan import PREFIX
from couchfarm.replication.render import Credentials, render
from couchfarm.replication.status import ReplicationStatus
from couchfarm.replication.topology import Replication, Topology
from couchfarm.replication.watch import Event, Severity

log = logging.getLogger("couchfarm.replication.relay")
RELAY_PREFIX = "couchfarm-relay:"
DIRECT = "direct"  #: the ``to`` label of a switch back to the direct link
BAD = ("crashing", "failed", "error")
AUTH = re.compile(r"unauthori[sz]ed|forbidden|auth_error|\b40[13]\b", re.IGNORECASE)
FINISHED = ("completed", "failed", "error")  #: document states of a job that no longer runs
Probe = Callable[[str, str], str | None]  #: (node, db) -> None when it answers, else why not


def leg_ids(rep: Replication, relay: str) -> tuple[str, str]:
    """The ids of the legs source -> relay and relay -> target; never a ``couchfarm:`` id."""
    rest = rep.doc_id.removeprefix(PREFIX)
    return f"{RELAY_PREFIX}{rest}:via-{relay}:1", f"{RELAY_PREFIX}{rest}:via-{relay}:2"


def legs(rep: Replication, relay: str) -> list[Replication]:
    """Both legs, one-shot, on the relay; ``since_seq`` counts in the source's sequence only."""
    first, second = leg_ids(rep, relay)
    onward = {k: v for k, v in rep.options.items() if k != "since_seq"}
    return [
        Replication(first, relay, rep.source, relay, rep.db, False, dict(rep.options), rep.origin),
        Replication(second, relay, relay, rep.target, rep.db, False, onward, rep.origin),
    ]


@dataclass
class _Link:
    rep: Replication
    bad_since: float | None = None
    relay: str | None = None  #: the relay carrying it now
    unavailable_reported: bool = False


class Relays:
    """The relay fallback of every topology link with ``via``; ``step`` is one bounded step."""

    def __init__(
        self,
        topo: Topology,
        clients: Mapping[str, CouchClient],
        creds: Credentials,
        *,
        relay_after: float = 60.0,
        probe: Probe | None = None,
    ) -> None:
        self.topo, self.clients, self.creds, self.relay_after = topo, clients, creds, relay_after
        self.probe = probe or self._probe
        self.links = {r.doc_id: _Link(r) for r in topo.replications if r.via}
        self.retiring: dict[tuple[str, str], None] = {}  #: (relay, leg id), in order

    @property
    def relayed(self) -> set[tuple[str, str]]:
        return {(k.rep.node, k.rep.doc_id) for k in self.links.values() if k.relay}

    def owns(self, doc_id: str) -> bool:
        return doc_id.startswith(RELAY_PREFIX)

    def step(self, statuses: list[ReplicationStatus], now: float) -> list[Event]:
        """Relay, re-run or restore each link as its state asks, then retire idle legs (last: the
        statuses of this poll still list a leg retired now, which must not read as a relay)."""
        seen = {s.key: s for s in statuses}
        events: list[Event] = []
        for link in self.links.values():
            try:
                events.extend(self._step(link, seen, now))
            except (CouchError, ReplicationBlocked) as exc:  # the next poll tries again
                log.warning("relay of %s: %s", link.rep.doc_id, redact(str(exc)))
        self._retire()
        return events

    def _step(self, link: _Link, seen: dict[tuple[str, str], ReplicationStatus], now: float) -> list[Event]:
        rep = link.rep
        link.relay = link.relay or self._found(rep, seen)
        direct = seen.get((rep.node, rep.doc_id))
        if link.relay is None:
            return self._maybe_relay(link, direct, now)
        if self.probe(rep.target, rep.db) is None:
            return [self._restore(link, direct)]
        self._write_legs(rep, link.relay, ("completed",))
        return []

    def _found(self, rep: Replication, seen: Mapping[tuple[str, str], Any]) -> str | None:
        """A relay whose legs exist already (a watch restarted while relaying), unless retiring."""
        for relay in rep.via:
            keys = [(relay, i) for i in leg_ids(rep, relay)]
            if any(k in seen and k not in self.retiring for k in keys):
                return relay
        return None

    def _maybe_relay(self, link: _Link, direct: ReplicationStatus | None, now: float) -> list[Event]:
        rep = link.rep
        if direct is None or direct.state not in BAD or AUTH.search(direct.reason or ""):
            link.bad_since, link.unavailable_reported = None, False
            return []
        link.bad_since = now if link.bad_since is None else link.bad_since
        waited = now - link.bad_since
        if waited < (rep.relay_after or self.relay_after):
            return []
        why = f"{rep.doc_id} has been {direct.state} for {waited:.0f}s ({direct.reason or 'no reason given'})"
        for relay in rep.via:
            problem = self.probe(relay, rep.db)
            if problem is None and self._written(rep, relay):
                link.relay, link.bad_since = relay, None
                return [self._switch(rep, relay, f"{why}: relayed through {relay}", DIRECT)]
            log.info("relay %s for %s is not usable: %s", relay, rep.doc_id, problem or "legs not written")
        if link.unavailable_reported:
            return []
        link.unavailable_reported = True
        message = redact(f"{why}, and none of its relays ({', '.join(rep.via)}) can take it")
        return [Event("relay_unavailable", Severity.WARNING, rep.node, rep.doc_id, message, direct.state)]

    def _written(self, rep: Replication, relay: str) -> bool:
        try:
            self._write_legs(rep, relay, FINISHED)
            return True
        except (CouchError, ReplicationBlocked) as exc:
            log.warning("cannot write the relay legs of %s on %s: %s", rep.doc_id, relay, redact(str(exc)))
            return False

    def _write_legs(self, rep: Replication, relay: str, rewrite: tuple[str, ...]) -> None:
        """Create missing legs; write again those whose document state is in ``rewrite``. A leg
        in another state is running (or was refused: rewriting it would only repeat the refusal)."""
        client = self.clients[relay]
        couchdb = client.is_couchdb
        marker = {"topology": self.topo.name, "relay_for": rep.doc_id}
        for leg in legs(rep, relay):
            current = get_doc(client, leg.doc_id)
            if current is None or current.get("_replication_state") in rewrite:
                body = render(leg, self.topo, self.creds, couchdb=couchdb, marker=marker)
                put_doc(client, body, current["_rev"] if current else None)

    def _restore(self, link: _Link, direct: ReplicationStatus | None) -> Event:
        rep, relay = link.rep, link.relay or ""
        if direct is not None and direct.state in BAD:
            self._restart(rep)
        for leg_id in leg_ids(rep, relay):
            self.retiring[(relay, leg_id)] = None
        link.relay, link.bad_since = None, None
        message = f"{rep.target} answers again: {rep.doc_id} is direct again; the legs through {relay} retire"
        return self._switch(rep, DIRECT, message, relay)

    def _restart(self, rep: Replication) -> None:
        """CouchDB: delete and write again (a crashed job waits out its backoff otherwise).
        pouchdb-server: leave a job that retries by itself; write again one that stopped."""
        client = self.clients[rep.node]
        doc = get_doc(client, rep.doc_id)
        if doc is None:
            return
        body = {**strip_server_fields(doc), "_id": rep.doc_id}
        if client.is_couchdb:
            delete_doc(client, rep.doc_id, str(doc["_rev"]))
            put_doc(client, body)
        elif doc.get("_replication_state") != "triggered":
            put_doc(client, body, str(doc["_rev"]))

    def _retire(self) -> None:
        """Delete retiring legs that no longer run (deleting a running one kills pouchdb-server)."""
        for key in list(self.retiring):
            relay, leg_id = key
            try:
                client = self.clients[relay]
                doc = get_doc(client, leg_id)
                if (
                    doc is not None
                    and not client.is_couchdb
                    and doc.get("_replication_state") not in FINISHED
                ):
                    continue
                if doc is not None:
                    delete_doc(client, leg_id, str(doc["_rev"]))
                    log.info("retired relay leg %s on %s", leg_id, relay)
                del self.retiring[key]
            except CouchError as exc:
                log.warning("cannot retire relay leg %s on %s yet: %s", leg_id, relay, exc)

    def _switch(self, rep: Replication, to: str, message: str, previous: str) -> Event:
        metrics.RELAY_SWITCHES.labels(metrics.FARM[0], rep.doc_id, to).inc()
        severity = Severity.INFO if to == DIRECT else Severity.WARNING
        data = {"link": rep.doc_id, "to": to, "from": previous}
        if to != DIRECT:
            data["legs"] = ", ".join(leg_ids(rep, to))
        state = "direct" if to == DIRECT else "relayed"
        return Event("relay_switch", severity, rep.node, rep.doc_id, redact(message), state, None, data)

    def _probe(self, node: str, db: str) -> str | None:
        """Whether ``db`` answers on ``node``, from couchfarm, with a fresh client (no breaker
        carried over from the outage, one attempt, short timeouts)."""
        spec = self.topo.nodes[node]
        client = client_for(
            spec.url, self.creds.get(node), timeout=PROBE_TIMEOUT, attempts=1, tls=node_tls(self.topo, node)
        )
        try:
            client.db_info(db)
            return None
        except CouchError as exc:
            return f"{node}: {type(exc).__name__}: {exc.reason or exc}"
