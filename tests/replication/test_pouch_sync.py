"""``replication sync`` through the CLI against real pouchdb-server nodes: it copies and says so, and
when it cannot it exits non-zero with the reason, never printing a password. Each test uses its own
databases; a wrong password never reaches a ``_replicator`` document (pouchdb-server dies on one)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from couchfarm.couch import CouchClient
from couchfarm.replication.api import get_doc, replicator_docs
from tests.replication.helpers import clients, env_for, run_cli, topology_text
from workers.local_servers import PouchServer, free_port

Writer = Callable[[str], Path]


def ids(client: CouchClient, db: str) -> set[str]:
    return {r["id"] for r in client.http.request("GET", f"{db}/_all_docs").json()["rows"]}


def sync_id(db: str, source: PouchServer, target: PouchServer) -> str:
    return f"couchfarm-sync:{db}:127.0.0.1:{source.port}->127.0.0.1:{target.port}"


def test_push_wait_copies_and_a_second_run_rewrites_the_finished_one(
    two_nodes: dict[str, PouchServer],
) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    nodes = clients(two_nodes)
    for c in nodes.values():
        c.create_db("p1")
    nodes["a"].put("p1", {"_id": "one"})
    first = run_cli(["sync", a.url, b.url, "--db", "p1", "--push", "--wait"], {})
    assert first.exit_code == 0, first.output
    assert ids(nodes["b"], "p1") == {"one"}
    assert f"completed {sync_id('p1', a, b)} on 127.0.0.1:{a.port}: 1 read, 1 written" in first.stdout
    assert "completed, 1 read, 1 written" in first.stderr  # the progress lines
    nodes["a"].put("p1", {"_id": "two"})
    again = run_cli(["sync", a.url, b.url, "--db", "p1", "--wait", "--json"], {})
    assert again.exit_code == 0, again.output
    (result,) = json.loads(again.stdout)["syncs"]
    assert (result["state"], result["ok"], result["docs_written"]) == ("completed", True, 1)
    assert "restarted" in again.stderr and ids(nodes["b"], "p1") == {"one", "two"}
    assert [d["_id"] for d in replicator_docs(nodes["a"], "couchfarm-sync:p1:")] == [sync_id("p1", a, b)]
    assert "secret" not in first.output + again.output


def test_pull_and_both_with_node_names_and_credentials_from_the_environment(
    two_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    nodes = clients(two_nodes)
    for c in nodes.values():
        c.create_db("p2")
    nodes["a"].put("p2", {"_id": "from-a"})
    auth = ["--source-auth-env", "SRC", "--target-auth-env", "TGT"]
    plain = run_cli(
        ["sync", a.plain_url, b.plain_url, "--db", "p2", "--pull", "--wait", *auth],
        {"SRC": "admin:secret", "TGT": "admin:secret"},
    )
    assert plain.exit_code == 0, plain.output
    assert get_doc(nodes["b"], sync_id("p2", a, b)) is not None  # --pull: written on the target
    assert get_doc(nodes["a"], sync_id("p2", a, b)) is None
    nodes["b"].put("p2", {"_id": "from-b"})
    path = write_topology(
        topology_text(two_nodes, "syncs", ["p2"], "  - {from: a, to: b, continuous: false}\n")
    )
    both = run_cli(["sync", "a", "b", "--topology", str(path), "--both", "--wait"], env_for(two_nodes))
    assert both.exit_code == 0, both.output
    assert both.stdout.count("completed couchfarm-sync:p2:") == 2
    assert get_doc(nodes["a"], "couchfarm-sync:p2:a->b") and get_doc(nodes["b"], "couchfarm-sync:p2:b->a")
    assert ids(nodes["a"], "p2") == ids(nodes["b"], "p2") == {"from-a", "from-b"}
    assert "secret" not in plain.output + both.output


def test_failures_exit_non_zero_with_the_reason(two_nodes: dict[str, PouchServer]) -> None:
    a, b = two_nodes["a"], two_nodes["b"]
    nodes = clients(two_nodes)
    nodes["a"].create_db("p3")
    nodes["a"].put("p3", {"_id": "x"})
    missing = run_cli(["sync", a.url, b.url, "--db", "p3", "--wait"], {})
    assert missing.exit_code == 1
    assert f"target database p3 does not exist on 127.0.0.1:{b.port}; pass --create-target" in missing.output
    created = run_cli(["sync", a.url, b.url, "--db", "p3", "--wait", "--create-target"], {})
    assert created.exit_code == 0 and ids(nodes["b"], "p3") == {"x"}, created.output
    wrong = run_cli(["sync", a.url, b.url.replace(":secret@", ":not-it@"), "--db", "p3", "--wait"], {})
    assert wrong.exit_code == 1 and "refused the credentials for p3 (401" in wrong.output
    assert "not-it" not in wrong.output
    dead = f"http://admin:secret@127.0.0.1:{free_port()}"
    unreachable = run_cli(["sync", a.url, dead, "--db", "p3", "--wait", "--timeout", "20"], {})
    assert unreachable.exit_code == 1, unreachable.output
    assert "crashing" in unreachable.stdout and "unreachable from couchfarm" in unreachable.stdout
    assert "secret" not in missing.output + wrong.output + unreachable.output
    assert a.alive() and b.alive()
