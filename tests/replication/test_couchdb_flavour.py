"""What only a real CouchDB 3 shows: auth objects in written documents, diffs against documents the
server has annotated, and rescan's checkpoint discovery through the scheduler (recorded answers)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from couchfarm.errors import ConfigError
from couchfarm.replication.api import REPLICATOR
from couchfarm.replication.endpoints import client_for
from couchfarm.replication.expand import parse_topology
from couchfarm.replication.plan import Action, build_plan
from couchfarm.replication.render import render, resolve_credentials
from couchfarm.replication.rescan import rescan
from tests.replication.fakes import StubServer, all_docs, body, fake_client, listing

WELCOME = body("08", 0)
TOPOLOGY: dict[str, Any] = {
    "name": "fleet",
    "nodes": {
        "hub": {"url": "http://127.0.0.1:25984", "auth": {"env": "HUB_CREDS"}},
        "edge": {
            "url": "http://127.0.0.1:25985",
            "peer_url": "https://edge.example:6984",
            "auth": {"env": "EDGE_TOKEN", "type": "bearer"},
            "profile": "cellular",
        },
    },
    "databases": ["iot"],
    "links": [{"link": "edge <-> hub", "continuous": True, "runs_on": "target"}],
}
ENV = {"HUB_CREDS": "admin:hub-pass-1", "EDGE_TOKEN": "tok-edge-2"}


def test_couchdb_documents_carry_auth_objects_and_bearer_headers() -> None:
    topo = parse_topology(TOPOLOGY)
    creds = resolve_credentials(topo, ENV)
    pull_to_hub = next(r for r in topo.replications if r.node == "hub")
    doc = render(pull_to_hub, topo, creds, couchdb=True)
    assert doc["source"] == {
        "url": "https://edge.example:6984/iot",
        "headers": {"Authorization": "Bearer tok-edge-2"},
    }
    assert doc["target"] == {
        "url": "http://127.0.0.1:25984/iot",
        "auth": {"basic": {"username": "admin", "password": "hub-pass-1"}},
    }
    assert doc["checkpoint_interval"] == 10_000 and doc["couchfarm"] == {"topology": "fleet"}
    assert "hub-pass-1" not in repr(creds) and "tok-edge-2" not in repr(creds)


def test_pouchdb_cannot_take_bearer_credentials() -> None:
    topo = parse_topology(TOPOLOGY)
    rep = next(r for r in topo.replications if r.node == "hub")
    with pytest.raises(Exception, match="only from URL userinfo"):
        render(rep, topo, resolve_credentials(topo, ENV), couchdb=False)


def test_missing_credentials_name_the_variable_and_line() -> None:
    topo = parse_topology(TOPOLOGY, lines={("nodes", "edge", "auth", "env"): 7}, source="fleet.yaml")
    with pytest.raises(
        ConfigError, match=r"fleet.yaml:7: nodes.edge.auth.env: environment variable EDGE_TOKEN"
    ):
        resolve_credentials(topo, {"HUB_CREDS": "admin:x"})


def served(doc: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``doc`` as CouchDB returns it after running it: a rev, an owner and the state fields."""
    return {
        **doc,
        "_rev": "2-abc",
        "owner": "admin",
        "_replication_state": "completed",
        "_replication_state_time": "2026-11-22T00:46:22Z",
        "_replication_stats": {"docs_read": 6},
        **extra,
    }


def test_plan_against_couchdb_ignores_server_fields_and_masks_credential_changes() -> None:
    topo = parse_topology(TOPOLOGY)
    creds = resolve_credentials(topo, ENV)
    on = {r.node: render(r, topo, creds, couchdb=True) for r in topo.replications}
    old_password = json.loads(json.dumps(on["hub"]).replace("hub-pass-1", "old-pass-0"))
    stale = {
        "_id": "couchfarm:iot:gone->hub",
        "_rev": "1-a",
        "source": "http://x:1/iot",
        "target": "http://y:1/iot",
        "continuous": True,
        "couchfarm": {"topology": "fleet"},
    }
    hub, _ = fake_client(
        {
            ("GET", "/"): [(200, WELCOME)],
            ("GET", "/_replicator/_all_docs"): [(200, all_docs(served(old_password), stale))],
        }
    )
    edge, _ = fake_client(
        {
            ("GET", "/"): [(200, WELCOME)],
            ("GET", "/_replicator/_all_docs"): [(200, all_docs(served(on["edge"])))],
        }
    )
    plan = build_plan(topo, {"hub": hub, "edge": edge}, creds, prune=True)
    actions = {(c.node, c.doc_id): c for c in plan.changes}
    assert actions[("edge", "couchfarm:iot:hub->edge")].action is Action.UNCHANGED
    rotated = actions[("hub", "couchfarm:iot:edge->hub")]
    assert rotated.action is Action.UPDATE
    assert [(d.field, d.note) for d in rotated.diffs] == [("target", "credentials differ")]
    assert actions[("hub", "couchfarm:iot:gone->hub")].action is Action.DELETE
    shown = json.dumps(plan.as_json()) + "\n".join(plan.lines(verbose=True))
    assert "hub-pass-1" not in shown and "old-pass-0" not in shown and "tok-edge-2" not in shown


def test_a_node_that_cannot_be_read_leaves_its_documents_unknown() -> None:
    topo = parse_topology(TOPOLOGY)
    hub, _ = fake_client(
        {("GET", "/"): [(200, WELCOME)], ("GET", "/_replicator/_all_docs"): [(200, all_docs())]}
    )
    edge, _ = fake_client({("GET", "/"): [(503, {"error": "unavailable"})]})
    plan = build_plan(topo, {"hub": hub, "edge": edge}, resolve_credentials(topo, ENV))
    assert {(c.node, c.action) for c in plan.changes} == {("hub", Action.CREATE), ("edge", Action.UNKNOWN)}
    assert all(c.blocked for c in plan.changes if c.node == "edge")


def stub_couchdb(scheduler_entry: dict[str, Any], *, local_docs: bool = False) -> StubServer:
    """One CouchDB serving 07a's rec_one: the document, the scheduler's view and both checkpoints."""
    stub = StubServer({})
    checkpoint = body("07a", 11)["rows"][0]["doc"]  # _local/48ad5182... on the source (same on the target)
    doc = body("07a", 4)
    routes = {
        ("GET", "/"): [(200, WELCOME)],
        ("GET", f"/{REPLICATOR}/rec_one"): [(200, doc)],
        ("DELETE", f"/{REPLICATOR}/rec_one"): [(200, {"ok": True, "id": "rec_one", "rev": "3-x"})],
        ("PUT", f"/{REPLICATOR}/rec_one"): [(201, {"ok": True, "id": "rec_one", "rev": "4-y"})],
        ("GET", f"/_scheduler/docs/{REPLICATOR}/rec_one"): [(200, scheduler_entry)],
        ("GET", "/_scheduler/jobs"): [(200, listing(key="jobs"))],
    }
    for db, index in (("rec_rsrc", 11), ("rec_rtgt", 10)):
        routes[("GET", f"/{db}/_local/48ad5182cd94e695d4ced2607e418d22")] = [(200, checkpoint)]
        routes[("DELETE", f"/{db}/_local/48ad5182cd94e695d4ced2607e418d22")] = [(200, {"ok": True})]
        if local_docs:
            routes[("GET", f"/{db}/_local_docs")] = [(200, body("07a", index))]
    stub.routes = routes
    return stub


def point_at(stub: StubServer) -> None:
    doc = stub.routes[("GET", f"/{REPLICATOR}/rec_one")][0][1]
    for end in ("source", "target"):
        doc[end] = doc[end].replace("127.0.0.1:25984", stub.url.split("://")[1])


@pytest.mark.integration  # an HTTP stub on a loopback port
@pytest.mark.parametrize(
    ("entry", "local_docs"),
    [(body("07a", 2), False), (body("07a", 3), True)],
    ids=["running: id from the scheduler", "completed: id from the shared _local docs"],
)
def test_rescan_on_couchdb_stops_the_job_before_deleting_both_checkpoints(
    entry: dict[str, Any], local_docs: bool
) -> None:
    stub = stub_couchdb(entry, local_docs=local_docs)
    point_at(stub)
    with stub.running():
        report = rescan("central", client_for(stub.url), "rec_one")
    writes = [(m, p) for m, p, _ in stub.received if m in ("DELETE", "PUT")]
    assert writes == [
        ("DELETE", "/_replicator/rec_one"),
        ("DELETE", "/rec_rsrc/_local/48ad5182cd94e695d4ced2607e418d22"),
        ("DELETE", "/rec_rtgt/_local/48ad5182cd94e695d4ced2607e418d22"),
        ("PUT", "/_replicator/rec_one"),
    ]
    recreated = stub.received[-1][2]
    assert not any(k.startswith("_replication") or k in ("owner", "_rev") for k in recreated)
    assert report.checkpoint == "48ad5182cd94e695d4ced2607e418d22" and report.removed == ["source", "target"]
