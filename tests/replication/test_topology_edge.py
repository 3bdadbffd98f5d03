"""The topology's ``security:`` section and relayed links (``via``, ``relay_after``): refused with
file:line and field when malformed, expanded as designed otherwise. No network."""

from __future__ import annotations

from pathlib import Path

import pytest

from couchfarm.replication.errors import TopologyError
from couchfarm.replication.expand import load_topology
from couchfarm.replication.security_plan import declared_security

NODES = """\
nodes:
  a: {url: "http://127.0.0.1:5984"}
  b: {url: "http://127.0.0.1:5985"}
  r: {url: "http://127.0.0.1:5986"}
databases: [shared, logs]
links:
  - {from: a, to: b, continuous: true, databases: [shared]}
"""

# (case, text appended to NODES, line, field, words)
MALFORMED = [
    (
        "security-typo",
        "security:\n  shared:\n    members: {name: [alice]}\n",
        10,
        "security.shared.members.name",
        "did you mean 'names'",
    ),
    (
        "security-not-a-list",
        "security:\n  shared:\n    admins:\n      roles: ops\n",
        11,
        "security.shared.admins.roles",
        "must be a list",
    ),
    (
        "security-twice",
        "security:\n  shared: {members: {roles: [x, x]}}\n",
        9,
        "security.shared",
        "'x' twice",
    ),
    ("security-db", "security:\n  metrics: {}\n", 9, "security.metrics", "not in the topology's databases"),
    (
        "security-node",
        "security:\n  shared:\n    nodes:\n      bb: {members: {roles: [x]}}\n",
        11,
        "security.shared.nodes.bb",
        "unknown node 'bb' (did you mean 'b'?)",
    ),
    ("security-nowhere", "security:\n  logs: {}\n", 9, "security.logs", "no link replicates this database"),
    ("via-unknown", "  - {from: b, to: a, continuous: true, via: [rr]}\n", 8, "links[1].via[0]", "'rr'"),
    (
        "via-filter",
        "  - {from: b, to: a, continuous: true, via: [r], filter: d/f}\n",
        8,
        "links[1].via",
        "filter",
    ),
    (
        "relay-after-alone",
        "  - {from: b, to: a, continuous: true, relay_after: 5}\n",
        8,
        "links[1].relay_after",
        "via",
    ),
    (
        "relay-after-zero",
        "  - {from: b, to: a, continuous: true, via: [r], relay_after: 0}\n",
        8,
        "links[1].relay_after",
        "greater than 0",
    ),
]


@pytest.mark.parametrize(
    ("case", "extra", "line", "field", "words"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_malformed_sections_name_file_line_and_field(
    tmp_path: Path, case: str, extra: str, line: int, field: str, words: str
) -> None:
    path = tmp_path / "topo.yaml"
    path.write_text(NODES + extra)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    expected = f"{path}:{line}: {field}"
    problem = next((p for p in info.value.problems if p.startswith(expected)), None)
    assert problem is not None, info.value.problems
    assert words in problem, problem


def test_security_applies_where_the_database_is_replicated_and_where_named(tmp_path: Path) -> None:
    path = tmp_path / "topo.yaml"
    path.write_text(
        NODES + "security:\n  shared:\n    members: {roles: [app]}\n    nodes:\n"
        "      b: {admins: {names: [boss]}}\n      r: {members: {roles: [relay]}}\n"
    )
    declared = declared_security(load_topology(path))
    assert list(declared) == [("a", "shared"), ("b", "shared"), ("r", "shared")]
    assert declared[("a", "shared")].model_dump() == {
        "admins": {"names": [], "roles": []},
        "members": {"names": [], "roles": ["app"]},
    }
    assert declared[("b", "shared")].admins.names == ["boss"] and declared[("b", "shared")].members.roles == [
        "app"
    ]
    assert declared[("r", "shared")].members.roles == ["relay"]


def test_relays_leave_out_the_ends_and_carry_their_delay(tmp_path: Path) -> None:
    path = tmp_path / "topo.yaml"
    path.write_text(
        NODES.replace("databases: [shared]}", "databases: [shared], via: [r, b], relay_after: 30}")
        + "  - {mesh: [a, r], continuous: true, databases: [logs], via: [b]}\n"
    )
    reps = {r.doc_id: r for r in load_topology(path).replications}
    direct = reps["couchfarm:shared:a->b"]
    assert direct.via == ("r",) and direct.relay_after == 30
    assert reps["couchfarm:logs:r->a"].via == ("b",) and reps["couchfarm:logs:r->a"].relay_after is None
    assert "via" not in direct.options and "relay_after" not in direct.options
