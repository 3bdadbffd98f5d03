"""The relay fallback on CouchDB-flavoured nodes (recorded 3.4.3 answers through scripted sessions):
legs carry auth objects, a completed leg is re-run, recovery deletes and rewrites the direct document
(CouchDB would otherwise wait out its backoff) and retires the legs at once (deleting cancels a job
on CouchDB), and a credential failure is never relayed. The state timeline is given as statuses."""

from __future__ import annotations

from typing import Any

from couchfarm.http import quote_id
from couchfarm.replication.expand import parse_topology
from couchfarm.replication.relay import Relays, leg_ids
from couchfarm.replication.render import resolve_credentials
from couchfarm.replication.status import ReplicationStatus, from_scheduler
from tests.replication.fakes import ScriptedSession, body, fake_client

TOPOLOGY = {
    "name": "fleet",
    "nodes": {
        n: {"url": f"http://127.0.0.1:{port}", "auth": {"env": f"{n.upper()}_CREDS"}}
        for n, port in (("a", 25984), ("relay", 25985), ("b", 25986))
    },
    "databases": ["rl"],
    "links": [{"from": "a", "to": "b", "continuous": True, "via": ["relay"], "relay_after": 60}],
}
DIRECT = "couchfarm:rl:a->b"
MISSING = (404, {"error": "not_found", "reason": "missing"})


def doc_path(doc_id: str) -> str:
    return "/_replicator/" + quote_id(doc_id)


def crashing(index: int) -> ReplicationStatus:
    """The direct link as the scheduler reports it: 07c's unreachable target (24) or bad password (8)."""
    return from_scheduler("a", dict(body("07c", index), doc_id=DIRECT), None, None)


def leg(doc_id: str, state: str) -> ReplicationStatus:
    return ReplicationStatus("relay", doc_id, state)


class Fleet:
    def __init__(self, target_up: list[bool]) -> None:
        topo = parse_topology(TOPOLOGY)
        creds = resolve_credentials(topo, {f"{n.upper()}_CREDS": "admin:s3cret-relay" for n in topo.nodes})
        self.legs = leg_ids(topo.replications[0], "relay")
        direct_doc = {"_id": DIRECT, "_rev": "1-a", "source": "x", "continuous": True, "owner": "admin"}
        finished = {"_id": "l", "_rev": "2-b", "_replication_state": "completed"}
        a, self.a = fake_client(
            self._couch({doc_path(DIRECT): [(200, direct_doc)]}), "http://127.0.0.1:25984"
        )
        relay_routes = {doc_path(i): [MISSING, (200, finished)] for i in self.legs}
        relay, self.relay = fake_client(self._couch(relay_routes), "http://127.0.0.1:25985")
        b, _ = fake_client(self._couch({}), "http://127.0.0.1:25986")
        self.up = list(target_up)
        self.relays = Relays(topo, {"a": a, "relay": relay, "b": b}, creds, probe=self.probe)

    @staticmethod
    def _couch(docs: dict[str, list[tuple[int, Any]]]) -> dict[tuple[str, str], list[tuple[int, Any]]]:
        routes = {("GET", "/"): [(200, body("08", 0))]}
        for path, answers in docs.items():
            routes.update({("GET", path): answers, ("PUT", path): [(201, {"ok": True, "rev": "3-c"})]})
            routes[("DELETE", path)] = [(200, {"ok": True, "rev": "4-d"})]
        return routes

    def probe(self, node: str, db: str) -> str | None:
        if node == "b":
            return None if self.up.pop(0) else "b: Unavailable: connection refused"
        return None


def puts(session: ScriptedSession) -> list[tuple[str, Any]]:
    return [(path, b) for method, path, b in session.bodies if method == "PUT"]


def test_relay_rerun_and_restore_on_couchdb() -> None:
    fleet = Fleet(target_up=[False, True])
    relays, first, second = fleet.relays, *fleet.legs
    assert relays.step([crashing(24)], 0.0) == []
    assert relays.step([crashing(24)], 59.0) == []
    (switch,) = relays.step([crashing(24)], 61.0)
    assert (switch.kind, switch.data["to"], switch.severity.value) == ("relay_switch", "relay", "warning")
    assert "crashing for 61s" in switch.message and "econnrefused" in switch.message
    written = dict(puts(fleet.relay))
    assert list(written) == [doc_path(first), doc_path(second)]
    basic = {"basic": {"username": "admin", "password": "s3cret-relay"}}
    assert written[doc_path(first)]["source"] == {"url": "http://127.0.0.1:25984/rl", "auth": basic}
    assert written[doc_path(second)]["target"] == {"url": "http://127.0.0.1:25986/rl", "auth": basic}
    assert written[doc_path(first)]["continuous"] is False
    assert written[doc_path(second)]["couchfarm"] == {"topology": "fleet", "relay_for": DIRECT}
    assert "s3cret-relay" not in switch.message
    assert relays.relayed == {("a", DIRECT)}
    statuses = [crashing(24), leg(first, "completed"), leg(second, "completed")]
    assert relays.step(statuses, 70.0) == []  # b still down: the completed legs run again
    assert [p for p, _ in puts(fleet.relay)][2:] == [doc_path(first), doc_path(second)]
    (back,) = relays.step(statuses, 80.0)
    assert (back.data["to"], back.data["from"], back.severity.value) == ("direct", "relay", "info")
    assert [c for c in fleet.a.calls if c[0] in ("DELETE", "PUT")] == [
        ("DELETE", doc_path(DIRECT)),
        ("PUT", doc_path(DIRECT)),
    ]
    rewritten = puts(fleet.a)[0][1]
    assert "owner" not in rewritten and "_rev" not in rewritten  # written anew, as the author wrote it
    assert [c for c in fleet.relay.calls if c[0] == "DELETE"] == [
        ("DELETE", doc_path(first)),
        ("DELETE", doc_path(second)),
    ]
    assert relays.relayed == set() and not relays.retiring


def test_a_credential_failure_is_never_relayed() -> None:
    fleet = Fleet(target_up=[])
    for now in (0.0, 61.0, 600.0):
        assert fleet.relays.step([crashing(8)], now) == []
    assert not fleet.relay.bodies and not [c for c in fleet.relay.calls if c[0] == "PUT"]
