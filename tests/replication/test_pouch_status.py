"""status / watch / rescan against real pouchdb-server nodes, which keep no scheduler: the state comes
from the documents' own fields, progress from the checkpoint itself, and a dead end from a probe."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from couchfarm.couch import CouchClient
from couchfarm.replication.api import get_doc, put_doc
from couchfarm.replication.endpoints import end_of, pouch_checkpoint_id
from couchfarm.replication.models import strip_server_fields
from tests.helpers import wait_for
from tests.replication.helpers import clients, env_for, run_cli, topology_text
from workers.local_servers import PouchServer, free_port

Writer = Callable[[str], Path]


def state(client: CouchClient, doc_id: str) -> str | None:
    return (get_doc(client, doc_id) or {}).get("_replication_state")


def rows(result_output: str) -> dict[str, dict[str, object]]:
    return {r["doc_id"]: r for r in json.loads(result_output)}


def test_completed_and_running_jobs_from_document_fields_and_checkpoints(
    two_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(two_nodes), env_for(two_nodes)
    for c in nodes.values():
        c.create_db("st")
    for i in range(3):
        nodes["a"].put("st", {"_id": f"d{i}", "n": i})
    links = "  - {from: a, to: b, continuous: false}\n  - {from: b, to: a, continuous: true}\n"
    path = write_topology(topology_text(two_nodes, "st", ["st"], links))
    assert run_cli(["apply", str(path)], env).exit_code == 0
    wait_for(lambda: state(nodes["a"], "couchfarm:st:a->b") == "completed", what="the one-shot job")
    nodes["b"].put("st", {"_id": "from-b"})
    wait_for(lambda: _checkpointed(path, env, "couchfarm:st:b->a"), what="b->a to checkpoint")
    result = run_cli(["status", "--topology", str(path), "--json"], env)
    assert result.exit_code == 0, result.output
    table = rows(result.stdout)
    done, live = table["couchfarm:st:a->b"], table["couchfarm:st:b->a"]
    assert (done["state"], done["docs_written"], done["via"], done["topology"]) == (
        "completed",
        3,
        "document",
        "st",
    )
    assert (live["state"], live["via"], live["pending"]) == ("running", "document+probe", 0)
    assert live["checkpointed_seq"] == live["source_seq"] and isinstance(live["source_seq"], int)
    assert "secret" not in result.output and "admin:***@" in str(done["source"])
    text = run_cli(["status", "--topology", str(path)], env)
    assert "couchfarm:st:a->b" in text.stdout and "completed" in text.stdout and "3/3" in text.stdout


def _checkpointed(path: Path, env: dict[str, str], doc_id: str) -> bool:
    row = rows(run_cli(["status", "--topology", str(path), "--json"], env).stdout).get(doc_id, {})
    return row.get("pending") == 0 and row.get("source_seq") not in (None, 0)


def test_a_replication_whose_target_is_down_is_reported_with_its_reason(
    two_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(two_nodes), env_for(two_nodes)
    nodes["a"].create_db("down")
    dead = PouchServer(port=free_port())  # declared, never started: nothing listens there
    servers = {**two_nodes, "gone": dead}
    path = write_topology(
        topology_text(servers, "down", ["down"], "  - {from: a, to: gone, continuous: true}\n")
    )
    env = {**env, "CF_GONE_CREDS": "admin:secret"}
    applied = run_cli(["apply", str(path)], env)
    assert applied.exit_code == 3 and "done    create  a  couchfarm:down:a->gone" in applied.stdout, (
        applied.output
    )
    assert "unknown" in applied.stdout and "cannot read this node" in applied.stdout
    # pouchdb-server marks the document triggered a moment after the write; before, it reads initializing
    wait_for(lambda: state(nodes["a"], "couchfarm:down:a->gone") == "triggered", what="the job to start")
    result = run_cli(["status", "--topology", str(path), "--json"], env)
    table = rows(result.stdout)
    job = table["couchfarm:down:a->gone"]
    assert job["state"] == "crashing" and job["via"] == "document+probe"
    assert f"http://admin:***@127.0.0.1:{dead.port}/down unreachable from couchfarm" in str(job["reason"])
    assert table["(node)"]["state"] == "unreachable" and "secret" not in result.output
    watch = run_cli(["watch", "--topology", str(path), "--once", "--json"], env)
    assert watch.exit_code == 2  # crashing and unreachable are alerts
    kinds = {(e["doc_id"], e["kind"]) for e in map(json.loads, watch.stdout.splitlines())}
    assert ("couchfarm:down:a->gone", "crashing") in kinds and ("(node)", "unreachable") in kinds


def test_rescan_deletes_both_checkpoints_and_replicates_from_the_start(
    two_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    """A target restored from a backup taken after the last checkpoint but before the data: the
    checkpoints on both ends agree, so re-running copies nothing; a rescan copies everything again."""
    nodes, env = clients(two_nodes), env_for(two_nodes)
    for c in nodes.values():
        c.create_db("rs")
    for i in range(4):
        nodes["a"].put("rs", {"_id": f"d{i}"})
    path = write_topology(topology_text(two_nodes, "rs", ["rs"], "  - {from: a, to: b, continuous: false}\n"))
    assert run_cli(["apply", str(path)], env).exit_code == 0
    doc_id = "couchfarm:rs:a->b"
    wait_for(lambda: state(nodes["a"], doc_id) == "completed", what="first run")
    assert _count(nodes["b"], "rs") == 4
    _restore_target_without_data(nodes["a"], nodes["b"], doc_id, "rs")
    _rerun(nodes["a"], doc_id)
    assert _count(nodes["b"], "rs") == 0  # the checkpoint says everything was copied already
    result = run_cli(["rescan", doc_id, "--topology", str(path), "--yes"], env)
    assert result.exit_code == 0, result.output
    assert "removed from source, target; document recreated" in result.stdout
    wait_for(lambda: state(nodes["a"], doc_id) == "completed", what="the re-scan")
    assert _count(nodes["b"], "rs") == 4 and _stats(nodes["a"], doc_id)["docs_written"] == 4


def _count(client: CouchClient, db: str) -> int:
    return int(client.db_info(db)["doc_count"])


def _restore_target_without_data(source: CouchClient, target: CouchClient, doc_id: str, db: str) -> None:
    """Recreate the target ``db`` empty but with its replication checkpoint, as an old backup has it."""
    doc = get_doc(source, doc_id)
    assert doc is not None
    ends = end_of(doc["source"]), end_of(doc["target"])
    assert ends[0] is not None and ends[1] is not None
    name = pouch_checkpoint_id(ends[0], ends[1], doc)
    checkpoint = target.get_local(db, name)
    assert checkpoint is not None, "the computed pouchdb checkpoint id must exist on the target"
    target.delete_db(db)
    target.create_db(db)
    target.put_local(db, name, checkpoint)


def _stats(client: CouchClient, doc_id: str) -> dict[str, int]:
    stats: dict[str, int] = (get_doc(client, doc_id) or {}).get("_replication_stats", {})
    return stats


def _rerun(client: CouchClient, doc_id: str) -> None:
    """Rewrite the document as it is (server fields aside): the job runs again from its checkpoint."""
    doc = get_doc(client, doc_id)
    assert doc is not None
    put_doc(client, {**strip_server_fields(doc), "_id": doc_id}, doc["_rev"])
    wait_for(lambda: state(client, doc_id) == "completed", what="the re-run")


def test_rescan_refuses_a_running_pouchdb_job(
    two_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(two_nodes), env_for(two_nodes)
    for c in nodes.values():
        c.create_db("rsrun")
    path = write_topology(
        topology_text(two_nodes, "rsrun", ["rsrun"], "  - {from: b, to: a, continuous: true}\n")
    )
    assert run_cli(["apply", str(path)], env).exit_code == 0
    wait_for(lambda: state(nodes["b"], "couchfarm:rsrun:b->a") == "triggered")
    result = run_cli(["rescan", "couchfarm:rsrun:b->a", "--topology", str(path), "--yes"], env)
    assert result.exit_code == 1 and "ReplicationBlocked" in result.stderr
    assert "running on pouchdb-server" in result.stderr
    missing = run_cli(["rescan", "nope", "--topology", str(path), "--yes"], env)
    assert missing.exit_code == 1 and "nope is on no node" in missing.stderr
    assert all(s.alive() for s in two_nodes.values())
