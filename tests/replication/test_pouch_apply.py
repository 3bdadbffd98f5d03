"""apply / plan / --prune against three real pouchdb-server nodes, through the CLI.

Every test uses its own databases, so the documents of one never show in another's plan. pouchdb-server
dies when a running job's document is deleted, so running continuous jobs are left alone here on
purpose (and one test checks that couchfarm refuses to touch them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from couchfarm.couch import CouchClient
from couchfarm.replication.api import get_doc, put_doc, replicator_docs
from tests.helpers import wait_for
from tests.replication.helpers import clients, env_for, run_cli, topology_text
from workers.local_servers import PouchServer

Writer = Callable[[str], Path]


def revs(nodes: dict[str, CouchClient], prefix: str) -> dict[str, str]:
    return {d["_id"]: d["_rev"] for c in nodes.values() for d in replicator_docs(c, prefix)}


def finished(nodes: dict[str, CouchClient], prefix: str, count: int) -> bool:
    docs = [d for c in nodes.values() for d in replicator_docs(c, prefix)]
    return len(docs) == count and all(d.get("_replication_state") == "completed" for d in docs)


def test_mesh_apply_then_plan_is_empty_and_carries_a_write_to_every_node(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("mesh")
    path = write_topology(
        topology_text(three_nodes, "mesh", ["mesh"], "  - {mesh: [a, b, c], continuous: true}\n")
    )
    applied = run_cli(["apply", str(path)], env)
    assert applied.exit_code == 0, applied.output
    assert applied.stdout.count("done    create") == 6
    plan = run_cli(["plan", str(path)], env)
    assert plan.exit_code == 0 and "6 unchanged" in plan.stdout, plan.output
    before = revs(nodes, "couchfarm:mesh:")
    again = run_cli(["apply", str(path)], env)
    assert again.exit_code == 0 and "done" not in again.stdout and revs(nodes, "couchfarm:mesh:") == before
    doc = get_doc(nodes["a"], "couchfarm:mesh:a->b")
    assert doc is not None and doc["couchfarm"] == {"topology": "mesh"}
    assert doc["source"] == three_nodes["a"].url + "/mesh"  # pouchdb-server: credentials as URL userinfo
    assert "secret" not in applied.output + plan.output
    nodes["a"].put("mesh", {"_id": "hello", "from": "a"})
    for name in ("b", "c"):
        wait_for(lambda n=name: _has(nodes[n], "mesh", "hello"), what=f"hello on {name}")


def _has(client: CouchClient, db: str, doc_id: str) -> bool:
    return any(r["id"] == doc_id for r in client.http.request("GET", f"{db}/_all_docs").json()["rows"])


ONE_SHOTS = """\
  - {{from: a, to: b, continuous: false}}
  - {{from: b, to: c, continuous: false{extra}}}
  - {{from: c, to: a, continuous: false}}
"""


def test_editing_one_link_changes_exactly_that_document(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("edits")
    path = write_topology(topology_text(three_nodes, "edits", ["edits"], ONE_SHOTS.format(extra="")))
    assert run_cli(["apply", str(path)], env).exit_code == 0
    wait_for(lambda: finished(nodes, "couchfarm:edits:", 3), what="one-shot jobs to complete")
    before = revs(nodes, "couchfarm:edits:")
    path = write_topology(
        topology_text(three_nodes, "edits", ["edits"], ONE_SHOTS.format(extra=", worker_batch_size: 50"))
    )
    plan = run_cli(["plan", str(path), "--json"], env)
    assert plan.exit_code == 2, plan.output
    pending = [c for c in json.loads(plan.stdout)["changes"] if c["action"] != "unchanged"]
    assert pending == [
        {
            "node": "b",
            "doc_id": "couchfarm:edits:b->c",
            "action": "update",
            "fields": [{"field": "worker_batch_size", "before": 500, "after": 50}],
        }
    ]
    applied = run_cli(["apply", str(path)], env)
    assert applied.exit_code == 0 and applied.stdout.count("done") == 1, applied.output
    after = revs(nodes, "couchfarm:edits:")
    assert [i for i in before if before[i] != after[i]] == ["couchfarm:edits:b->c"]
    wait_for(lambda: finished(nodes, "couchfarm:edits:", 3), what="the replaced job to complete")
    assert run_cli(["plan", str(path)], env).exit_code == 0


def test_prune_removes_a_dropped_link_and_nothing_else(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("prune")
    a, b = three_nodes["a"].url, three_nodes["b"].url
    others = [  # on node a: by hand, by another topology, and one of our ids without our marker
        {"_id": "by-hand", "source": f"{a}/prune", "target": f"{b}/prune_copy1", "continuous": False},
        {
            "_id": "couchfarm:prune:a->b:theirs",
            "source": f"{a}/prune",
            "target": f"{b}/prune_copy2",
            "continuous": False,
            "couchfarm": {"topology": "someone-else"},
        },
        {
            "_id": "couchfarm:prune:a->zz",
            "source": f"{a}/prune",
            "target": f"{b}/prune_copy3",
            "continuous": False,
        },
    ]
    for doc in others:
        put_doc(nodes["a"], doc)
    links = "  - {from: a, to: b, continuous: false}\n  - {from: a, to: c, continuous: false}\n"
    path = write_topology(topology_text(three_nodes, "pruning", ["prune"], links))
    assert run_cli(["apply", str(path)], env).exit_code == 0
    wait_for(lambda: finished(nodes, "couchfarm:prune:a->", 4) and finished(nodes, "by-hand", 1), what="jobs")
    before = revs(nodes, "")
    path = write_topology(topology_text(three_nodes, "pruning", ["prune"], links.splitlines(True)[0]))
    kept = run_cli(["plan", str(path)], env)
    assert kept.exit_code == 0 and "orphan    a  couchfarm:prune:a->c" in kept.stdout, kept.output
    plan = run_cli(["plan", str(path), "--prune", "--json"], env)
    assert plan.exit_code == 2
    assert [c for c in json.loads(plan.stdout)["changes"] if c["action"] != "unchanged"] == [
        {"node": "a", "doc_id": "couchfarm:prune:a->c", "action": "delete"}
    ]
    pruned = run_cli(["apply", str(path), "--prune"], env)
    assert pruned.exit_code == 0, pruned.output
    after = revs(nodes, "")
    assert set(before) - set(after) == {"couchfarm:prune:a->c"}
    assert all(after[i] == before[i] for i in after)
    assert three_nodes["a"].alive()


def test_a_document_couchfarm_did_not_create_is_never_replaced(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("foreign")
    a, b = three_nodes["a"].url, three_nodes["b"].url
    put_doc(
        nodes["a"],
        {
            "_id": "couchfarm:foreign:a->b",
            "source": f"{a}/foreign",
            "target": f"{b}/foreign",
            "continuous": False,
        },
    )
    wait_for(lambda: finished(nodes, "couchfarm:foreign:", 1), what="the hand-made job")
    before = revs(nodes, "couchfarm:foreign:")
    path = write_topology(
        topology_text(three_nodes, "f", ["foreign"], "  - {from: a, to: b, continuous: true}\n")
    )
    plan = run_cli(["plan", str(path)], env)
    assert plan.exit_code == 2 and "foreign" in plan.stdout and "belongs to someone else" in plan.stdout
    applied = run_cli(["apply", str(path)], env)
    assert applied.exit_code == 3 and "blocked" in applied.stdout
    assert revs(nodes, "couchfarm:foreign:") == before


def test_pouchdb_limits_are_refused_instead_of_crashing_a_node(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    """A running job can be neither edited nor deleted on pouchdb-server, and a selector replication
    from it kills the source: couchfarm reports these as blocked and every node stays up."""
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("limits")
    path = write_topology(
        topology_text(three_nodes, "limits", ["limits"], "  - {from: a, to: b, continuous: true}\n")
    )
    assert run_cli(["apply", str(path)], env).exit_code == 0
    wait_for(
        lambda: (get_doc(nodes["a"], "couchfarm:limits:a->b") or {}).get("_replication_state") == "triggered"
    )
    before = revs(nodes, "couchfarm:limits:")
    edited = (
        "  - {from: a, to: b, continuous: true, worker_batch_size: 10}\n"
        "  - {from: b, to: c, continuous: false, selector: {type: x}}\n"
    )
    path = write_topology(topology_text(three_nodes, "limits", ["limits"], edited))
    applied = run_cli(["apply", str(path)], env)
    assert applied.exit_code == 3, applied.output
    assert (
        "refuses edits of a running job" in applied.stdout
        and "dies on _changes?filter=_selector" in applied.stdout
    )
    path = write_topology(
        topology_text(three_nodes, "limits", ["limits"], "  - {from: c, to: a, continuous: false}\n")
    )
    pruned = run_cli(["apply", str(path), "--prune"], env)
    assert pruned.exit_code == 3 and "blocked delete" in pruned.stdout
    assert revs(nodes, "couchfarm:limits:a->b") == {k: v for k, v in before.items() if "a->b" in k}
    assert all(s.alive() for s in three_nodes.values())


def test_filter_functions_are_checked_on_the_source_then_used(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("filtered")
    link = "  - {from: a, to: c, continuous: false, filter: app/by_type, query_params: {type: hot}}\n"
    path = write_topology(topology_text(three_nodes, "filtered", ["filtered"], link))
    missing = run_cli(["plan", str(path)], env)
    assert missing.exit_code == 2 and "_design/app is missing from filtered on a" in missing.stdout
    nodes["a"].put(
        "filtered",
        {
            "_id": "_design/app",
            "filters": {"by_type": "function(doc, req) { return doc.type === req.query.type; }"},
        },
    )
    nodes["a"].put("filtered", {"_id": "h1", "type": "hot"})
    nodes["a"].put("filtered", {"_id": "c1", "type": "cold"})
    assert run_cli(["apply", str(path)], env).exit_code == 0
    wait_for(lambda: finished(nodes, "couchfarm:filtered:", 1), what="the filtered job")
    assert _has(nodes["c"], "filtered", "h1") and not _has(nodes["c"], "filtered", "c1")


def test_validate_needs_no_network_and_plan_needs_the_credentials(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    path = write_topology(topology_text(three_nodes, "v", ["v"], "  - {mesh: [a, b], continuous: true}\n"))
    stopped = {name: PouchServer(port=1) for name in three_nodes}  # nothing listens on port 1
    offline = write_topology(topology_text(stopped, "v", ["v"], "  - {mesh: [a, b], continuous: true}\n"))
    assert run_cli(["validate", str(offline)], {}).exit_code == 0
    plan = run_cli(["plan", str(path)], {"CF_A_CREDS": "admin:secret"})
    assert plan.exit_code == 1 and "CF_B_CREDS is not set" in plan.output
    plan = run_cli(["plan", str(path)], {**env_for(three_nodes), "CF_C_CREDS": "no-colon"})
    assert plan.exit_code == 1 and "CF_C_CREDS must hold user:password" in plan.output
