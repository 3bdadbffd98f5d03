"""``_security`` objects planned and applied through the CLI against real pouchdb-server nodes
(which answer ``GET/PUT /{db}/_security`` as CouchDB does, and enforce ``members``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import requests

from couchfarm.replication.api import get_security, put_security
from tests.replication.helpers import clients, env_for, run_cli, topology_text
from workers.local_servers import PouchServer

Writer = Callable[[str], Path]
LINK = "  - {from: a, to: b, continuous: false}\n"
GUARDED = """\
security:
  sec:
    admins: {roles: [ops]}
    members: {names: [alice], roles: [readers]}
    nodes:
      b: {members: {names: [bob]}}
"""


def topology(servers: dict[str, PouchServer], db: str, security: str) -> str:
    return topology_text(servers, db, [db], LINK) + security.replace("sec:", f"{db}:")


def test_plan_apply_and_apply_again_writes_nothing(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("sec")
    path = write_topology(topology(three_nodes, "sec", GUARDED))
    plan = run_cli(["plan", str(path), "--json"], env)
    assert plan.exit_code == 2, plan.output
    planned = json.loads(plan.stdout)
    assert planned["warnings"] == []
    by_node = {c["node"]: c for c in planned["security"]}
    assert set(by_node) == {"a", "b"}  # c replicates nothing of sec: its object is left alone
    assert by_node["a"]["fields"] == [
        {"field": "admins.roles", "before": [], "after": ["ops"]},
        {"field": "members.names", "before": [], "after": ["alice"]},
        {"field": "members.roles", "before": [], "after": ["readers"]},
    ]
    assert {"field": "members.names", "before": [], "after": ["bob"]} in by_node["b"]["fields"]
    applied = run_cli(["apply", str(path)], env)
    assert applied.exit_code == 0 and applied.stdout.count("done    update") == 2, applied.output
    assert get_security(nodes["a"], "sec") == {
        "admins": {"names": [], "roles": ["ops"]},
        "members": {"names": ["alice"], "roles": ["readers"]},
    }
    assert (get_security(nodes["b"], "sec") or {})["members"] == {"names": ["bob"], "roles": []}
    assert get_security(nodes["c"], "sec") == {}
    assert requests.get(f"{three_nodes['a'].plain_url}/sec", timeout=5).status_code == 401  # members only
    # a field couchfarm does not manage, and another order of the same names: still equal
    put_security(
        nodes["a"],
        "sec",
        {
            "admins": {"names": [], "roles": ["ops"]},
            "members": {"names": ["alice"], "roles": ["readers"]},
            "other_tool": {"keep": True},
        },
    )
    again = run_cli(["plan", str(path)], env)
    assert again.exit_code == 0 and "security: 2 unchanged" in again.stdout, again.output
    reapplied = run_cli(["apply", str(path)], env)
    assert reapplied.exit_code == 0 and "done" not in reapplied.stdout, reapplied.output
    assert (get_security(nodes["a"], "sec") or {}).get("other_tool") == {"keep": True}


def test_emptying_members_or_admins_warns_and_needs_allow_widen(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    nodes, env = clients(three_nodes), env_for(three_nodes)
    for c in nodes.values():
        c.create_db("wide")
    path = write_topology(topology(three_nodes, "wide", GUARDED))
    assert run_cli(["apply", str(path)], env).exit_code == 0
    opened = "security:\n  sec:\n    admins: {roles: [ops]}\n    members: {roles: [readers]}\n"
    narrowed = write_topology(topology(three_nodes, "wide", opened))
    quiet = run_cli(["plan", str(narrowed), "--json"], env)  # b loses bob but keeps a reader role
    assert quiet.exit_code == 2 and json.loads(quiet.stdout)["warnings"] == [], quiet.output
    widened = write_topology(topology(three_nodes, "wide", "security:\n  sec:\n    admins: {roles: [ops]}\n"))
    plan = run_cli(["plan", str(widened)], env)
    assert plan.exit_code == 2
    assert "WARNING: a wide/_security: removes every member (names alice; roles readers)" in plan.stdout
    assert "WARNING: b wide/_security: removes every member (names bob)" in plan.stdout
    assert '~ members.names: ["alice"] -> []' in plan.stdout
    warnings = json.loads(run_cli(["plan", str(widened), "--json"], env).stdout)["warnings"]
    assert len(warnings) == 2 and all("removes every member" in w for w in warnings)
    refused = run_cli(["apply", str(widened)], env)
    assert refused.exit_code == 3, refused.output
    assert refused.stdout.count("refused without --allow-widen: it would empty members") == 2
    assert "WARNING: a wide/_security: removes every member" in refused.stderr
    assert (get_security(nodes["a"], "wide") or {})["members"]["names"] == ["alice"]
    allowed = run_cli(["apply", str(widened), "--allow-widen"], env)
    assert allowed.exit_code == 0 and allowed.stdout.count("done") == 2, allowed.output
    assert (get_security(nodes["a"], "wide") or {})["members"] == {"names": [], "roles": []}
    no_admins = write_topology(topology(three_nodes, "wide", "security:\n  sec: {}\n"))
    plan = run_cli(["plan", str(no_admins)], env)
    assert plan.exit_code == 2 and "removes every database admin (roles ops)" in plan.stdout
    assert run_cli(["apply", str(no_admins)], env).exit_code == 3
    assert (get_security(nodes["a"], "wide") or {})["admins"]["roles"] == ["ops"]


def test_a_missing_database_is_reported_not_created(
    three_nodes: dict[str, PouchServer], write_topology: Writer
) -> None:
    env = env_for(three_nodes)
    clients(three_nodes)["a"].create_db("half")
    path = write_topology(topology(three_nodes, "half", GUARDED))
    applied = run_cli(["apply", str(path)], env)
    assert applied.exit_code == 3, applied.output
    assert "blocked unknown b  half/_security: database half does not exist on b" in applied.stdout
    assert "done    update  a  half/_security" in applied.stdout
