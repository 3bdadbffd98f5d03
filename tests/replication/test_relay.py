"""Relay fallback against three real pouchdb-server nodes: a, relay, and b behind a TCP forwarder.

Cutting the forwarder makes b unreachable for everyone (a's replicator, the relay, couchfarm) without
losing b's in-memory data; restoring it listens again on the same port. The watch must switch the
link a -> b to the relay once it has failed for its ``relay_after``, carry a document written during
the outage to the relay, and switch back once b answers, with that document on b in the end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from couchfarm import metrics
from couchfarm.breaker import RetryPolicy
from couchfarm.couch import CouchClient
from couchfarm.replication.api import get_doc, replicator_docs
from couchfarm.replication.endpoints import node_clients
from couchfarm.replication.expand import load_topology
from couchfarm.replication.relay import RELAY_PREFIX, Relays
from couchfarm.replication.render import resolve_credentials
from couchfarm.replication.status import collect_all
from couchfarm.replication.watch import Event, Watcher, WebhookSink, log_sink
from tests.replication.fakes import StubServer
from tests.replication.forwarder import Forwarder
from tests.replication.helpers import CREDS, clients, run_cli, start_nodes, stop_nodes
from workers.local_servers import PouchServer

Writer = Callable[[str], Path]
RELAY_AFTER = 1.0
LINK = "couchfarm:rl:a->b"


@pytest.fixture(scope="module")
def relay_nodes() -> Iterator[tuple[dict[str, PouchServer], Forwarder]]:
    servers = start_nodes(["a", "relay", "b"])
    forwarder = Forwarder(servers["b"].port).start()
    try:
        yield servers, forwarder
    finally:
        forwarder.close()
        stop_nodes(servers)


def topology(servers: dict[str, PouchServer], forwarder: Forwarder) -> str:
    urls = {"a": servers["a"].plain_url, "relay": servers["relay"].plain_url, "b": forwarder.url}
    nodes = "\n".join(f'  {n}: {{url: "{u}", auth: {{env: CF_{n.upper()}_CREDS}}}}' for n, u in urls.items())
    link = f"  - {{from: a, to: b, continuous: true, via: [relay], relay_after: {RELAY_AFTER}}}\n"
    return f"name: relayed\nnodes:\n{nodes}\ndatabases: [rl]\nlinks:\n{link}"


def has(client: CouchClient, doc_id: str) -> bool:
    return any(r["id"] == doc_id for r in client.http.request("GET", "rl/_all_docs").json()["rows"])


def poll_until(
    watcher: Watcher, check: Callable[[list[Event]], bool], timeout: float, what: str
) -> list[Event]:
    """Poll every 0.2 s until ``check(all events so far)``; the events seen on the way."""
    seen: list[Event] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        seen.extend(watcher.poll())
        if check(seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; events: {[(e.kind, e.message) for e in seen]}")


def switches(events: list[Event], to: str) -> list[Event]:
    return [e for e in events if e.kind == "relay_switch" and e.data["to"] == to]


def count(to: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "couchfarm_replication_relay_switches_total", {"farm": metrics.FARM[0], "link": LINK, "to": to}
        )
        or 0
    )


def test_a_failing_link_is_relayed_and_restored_without_losing_a_document(
    relay_nodes: tuple[dict[str, PouchServer], Forwarder],
    write_topology: Writer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    servers, forwarder = relay_nodes
    caplog.set_level(logging.INFO, logger="couchfarm.replication.watch")
    direct = clients(servers)
    for c in direct.values():
        c.create_db("rl")
    env = {f"CF_{n.upper()}_CREDS": CREDS for n in servers}
    path = write_topology(topology(servers, forwarder))
    assert run_cli(["apply", str(path)], env).exit_code == 0
    direct["a"].put("rl", {"_id": "before"})
    wait = lambda check, what: poll_until(watcher, lambda _: check(), 20, what)  # noqa: E731
    topo = load_topology(path)
    creds = resolve_credentials(topo, env)
    nodes = node_clients(topo, creds)
    hook = StubServer({("POST", "/hook"): [(200, {})]})
    webhook = WebhookSink(hook.url + "/hook", alerts_only=True, retry=RetryPolicy(3, 0.0, 0.0))
    relays = Relays(topo, nodes, creds, relay_after=60.0)  # the link's own relay_after wins
    watcher = Watcher(lambda: collect_all(nodes, topo, creds), [log_sink(), webhook], relay=relays)
    before = {to: count(to) for to in ("relay", "direct")}
    with hook.running():
        wait(lambda: has(direct["b"], "before"), "the direct link to carry a document")
        forwarder.cut()
        cut_at = time.monotonic()
        events = poll_until(watcher, lambda ev: bool(switches(ev, "relay")), 15, "the switch to the relay")
        waited = time.monotonic() - cut_at
        assert RELAY_AFTER <= waited <= RELAY_AFTER + 6, waited
        (switch,) = switches(events, "relay")
        assert switch.severity.value == "warning" and "relayed through relay" in switch.message
        legs = [d["_id"] for d in replicator_docs(direct["relay"], RELAY_PREFIX)]
        assert legs == [f"{RELAY_PREFIX}rl:a->b:via-relay:1", f"{RELAY_PREFIX}rl:a->b:via-relay:2"]
        assert (get_doc(direct["relay"], legs[0]) or {})["couchfarm"] == {
            "topology": "relayed",
            "relay_for": LINK,
        }
        direct["a"].put("rl", {"_id": "during-outage"})
        wait(lambda: has(direct["relay"], "during-outage"), "the first leg to carry it to the relay")
        assert not has(direct["b"], "during-outage")
        forwarder.restore()
        events = poll_until(watcher, lambda ev: bool(switches(ev, "direct")), 15, "the switch back")
        assert not switches(events, "relay")
        events = wait(lambda: not replicator_docs(direct["relay"], RELAY_PREFIX), "the legs to retire")
        events += wait(lambda: has(direct["b"], "during-outage"), "the outage's document on b")
        events += watcher.poll()
        assert not [e for e in events if e.kind == "relay_switch"]  # no flapping once restored
    assert [count(to) - before[to] for to in ("relay", "direct")] == [1, 1]
    sent = [r[2]["data"]["to"] for r in hook.received if r[2]["kind"] == "relay_switch"]
    assert sent == ["relay", "direct"]  # the switch back is not an alert, and is sent all the same
    logged = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "relay_switch"]
    assert len(logged) == 2 and logged[0].startswith(f"relay_switch {LINK}: ")
    assert get_doc(direct["a"], LINK) is not None  # the direct document was never deleted
    assert all(s.alive() for s in servers.values())


def test_watch_cli_takes_relay_after(
    relay_nodes: tuple[dict[str, PouchServer], Forwarder], write_topology: Writer
) -> None:
    servers, forwarder = relay_nodes
    env = {f"CF_{n.upper()}_CREDS": CREDS for n in servers}
    path = write_topology(topology(servers, forwarder))
    ok = run_cli(["watch", "-t", str(path), "--once", "--relay-after", "5"], env)
    assert ok.exit_code == 0, ok.output
    bad = run_cli(["watch", "-t", str(path), "--once", "--relay-after", "0"], env)
    assert bad.exit_code == 2 and "relay-after" in bad.output
