"""Topology files: malformed ones are refused with file:line and field; good ones expand as designed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from couchfarm.replication.errors import TopologyError
from couchfarm.replication.expand import load_topology
from couchfarm.replication.profiles import PRESETS

ROOT = Path(__file__).resolve().parent.parent.parent
NODES = """\
nodes:
  a: {url: "http://127.0.0.1:5984", auth: {env: A_CREDS}}
  b: {url: "http://127.0.0.1:5985", auth: {env: B_CREDS}, profile: cellular}
  c: {url: "http://127.0.0.1:5986"}
databases: [shared, logs]
"""

# (case, file text, line, field, words)
MALFORMED: list[tuple[str, str, int, str, str]] = [
    (
        "continuous-string",
        NODES + "links:\n  - {from: a, to: b, continuous: sometimes}\n",
        7,
        "links[0].continuous",
        "true or false",
    ),
    ("continuous-missing", NODES + "links:\n  - mesh: [a, b]\n", 7, "links[0].continuous", "required"),
    (
        "unknown-node",
        NODES + "links:\n  - mesh: [a, bb]\n    continuous: true\n",
        7,
        "links[0].mesh[1]",
        "unknown node 'bb' (did you mean 'b'?)",
    ),
    (
        "password-in-url",
        NODES.replace("127.0.0.1:5986", "admin:pw@127.0.0.1:5986") + "links:\n  - {link: a -> b, "
        "continuous: true}\n",
        4,
        "nodes.c.url",
        "credentials must not be written",
    ),
    (
        "unknown-profile",
        NODES.replace("cellular", "cellullar") + "links:\n  - {link: a -> b, continuous: true}\n",
        3,
        "nodes.b.profile",
        "did you mean 'cellular'",
    ),
    (
        "typo-in-link",
        NODES + "links:\n  - mesh: [a, b]\n    continuous: true\n    checkpoint_intervall: 5000\n",
        9,
        "links[0].checkpoint_intervall",
        "did you mean 'checkpoint_interval'",
    ),
    (
        "self-link",
        NODES + "links:\n  - link: a <-> a\n    continuous: false\n",
        7,
        "links[0].link",
        "cannot replicate to itself",
    ),
    ("no-link-kind", NODES + "links:\n  - {to: b, continuous: true}\n", 7, "links[0]", "exactly one of"),
    (
        "two-link-kinds",
        NODES + "links:\n  - {mesh: [a, b], chain: [a, c], continuous: true}\n",
        7,
        "links[0]",
        "found mesh, chain",
    ),
    (
        "timeout-below-rtt",
        NODES + "links:\n  - mesh: [a, b]\n    continuous: true\n    connection_timeout: 1000\n",
        9,
        "links[0].connection_timeout",
        "expected round trip of 1000 ms",
    ),
    (
        "selector-and-doc-ids",
        NODES + "links:\n  - from: a\n    to: b\n    continuous: true\n    doc_ids: [x]\n"
        "    selector: {type: t}\n",
        11,
        "links[0].selector",
        "mutually exclusive",
    ),
    (
        "duplicate-id",
        NODES + "links:\n  - {mesh: [a, b], continuous: true}\n  - {from: a, to: b, continuous: false}\n",
        8,
        "links[1]",
        "give one of the links a name",
    ),
    (
        "duplicate-replication",
        NODES + "links:\n  - {from: a, to: b, continuous: true, name: one}\n"
        "  - {from: a, to: b, continuous: true, name: two}\n",
        8,
        "links[1]",
        "fails the second document as a duplicate",
    ),
    (
        "db-not-declared",
        NODES + "links:\n  - {from: a, to: b, continuous: true, databases: [shared, metrics]}\n",
        7,
        "links[0].databases[1]",
        "'metrics' is not in the topology's databases",
    ),
    (
        "bad-db-name",
        NODES.replace("[shared, logs]", "[shared, Logs]") + "links:\n  - {link: a -> b, continuous: true}\n",
        5,
        "databases[1]",
        "not a legal CouchDB database name",
    ),
    (
        "env-name",
        NODES.replace("env: A_CREDS", "env: 'A CREDS'") + "links:\n  - {link: a -> b, continuous: true}\n",
        2,
        "nodes.a.auth.env",
        "should match pattern",
    ),
    (
        "runs-on-hub-outside-hub",
        NODES + "links:\n  - {from: a, to: b, continuous: true, runs_on: hub}\n",
        7,
        "links[0].runs_on",
        "only applies to hub links",
    ),
    (
        "hub-is-spoke",
        NODES + "links:\n  - {hub: a, spokes: [a, b], continuous: true}\n",
        7,
        "links[0].spokes",
        "cannot also be a spoke",
    ),
    (
        "profile-base",
        NODES + "profiles:\n  rural: {checkpoint_interval: 8000}\nlinks:\n  - {link: a -> b, "
        "continuous: true}\n",
        7,
        "profiles.rural",
        "needs base",
    ),
    (
        "unknown-top-level",
        NODES + "link:\n  - {link: a -> b, continuous: true}\n",
        6,
        "link",
        "unknown section 'link' (did you mean 'links'?)",
    ),
    ("no-links", NODES, 1, "links", "is required"),
]


def write(tmp_path: Path, text: str, name: str = "topo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(("case", "text", "line", "field", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_topology_names_file_line_and_field(
    tmp_path: Path, case: str, text: str, line: int, field: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    expected = f"{path}:{line}: {field}: "
    problem = next((p for p in info.value.problems if p.startswith(expected)), None)
    assert problem is not None, info.value.problems
    assert words in problem, problem


def test_every_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    text = NODES.replace("127.0.0.1:5986", "u:p@127.0.0.1:5986") + textwrap.dedent("""\
        links:
          - {from: a, to: zz, continuous: true}
          - {mesh: [a, b], continuous: maybe}
        """)
    with pytest.raises(TopologyError) as info:
        load_topology(write(tmp_path, text))
    assert [p.split(": ")[1] for p in info.value.problems] == [
        "nodes.c.url",
        "links[0].to",
        "links[1].continuous",
    ]


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"topo.yaml:\d+: not valid YAML"):
        load_topology(write(tmp_path, "nodes:\n  a: [\n"))
    with pytest.raises(Exception, match="must be a mapping"):
        load_topology(write(tmp_path, "- a\n- b\n"))


def test_the_example_from_the_issue(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        nodes:
          edge-1: {url: "https://edge-1.local:5984", auth: {env: EDGE1_CREDENTIALS}, profile: cellular}
          edge-2: {url: "https://edge-2.local:5984", auth: {env: EDGE2_CREDENTIALS}, profile: cellular}
          central: {url: "https://central.example:5984", auth: {env: CENTRAL_CREDENTIALS}}
        databases: [iot_telemetry]
        links:
          - mesh: [edge-1, edge-2, central]
            continuous: true
          - from: edge-1
            to: central
            continuous: false
            selector: {type: temperature}
        """)
    topo = load_topology(write(tmp_path, text, "fleet.yaml"))
    assert topo.name == "fleet"
    ids = sorted(r.doc_id for r in topo.replications)
    assert len(ids) == 7 and "couchfarm:iot_telemetry:central->edge-1" in ids
    filtered = next(r for r in topo.replications if "selector" in r.options)
    assert filtered.doc_id.startswith("couchfarm:iot_telemetry:edge-1->central:sel-")
    assert filtered.node == "edge-1" and filtered.continuous is False
    # a link between a cellular and a datacenter node is tuned for the cellular side
    assert (
        next(r for r in topo.replications if r.source == "central").options["checkpoint_interval"] == 10_000
    )


def expand(tmp_path: Path, links: str, extra: str = "") -> list[tuple[str, str, str, str]]:
    topo = load_topology(write(tmp_path, NODES + extra + "links:\n" + textwrap.indent(links, "  ")))
    return sorted((r.node, r.source, r.target, r.db) for r in topo.replications)


def test_mesh_hub_chain_and_arrows(tmp_path: Path) -> None:
    mesh = expand(tmp_path, "- {mesh: [a, b, c], continuous: true, databases: [shared]}\n")
    assert len(mesh) == 6 and all(node == source for node, source, _, _ in mesh)
    hub = expand(tmp_path, "- {hub: a, continuous: true, databases: [logs]}\n")
    assert hub == [
        ("b", "a", "b", "logs"),
        ("b", "b", "a", "logs"),
        ("c", "a", "c", "logs"),
        ("c", "c", "a", "logs"),
    ]
    to_hub = expand(tmp_path, "- {hub: a, spokes: [b], direction: to_hub, runs_on: hub, continuous: true}\n")
    assert to_hub == [("a", "b", "a", "logs"), ("a", "b", "a", "shared")]
    chain = expand(tmp_path, "- {chain: [a, b, c], continuous: false, databases: [logs]}\n")
    assert chain == [("a", "a", "b", "logs"), ("b", "b", "c", "logs")]
    both = expand(tmp_path, "- {chain: [a, b, c], direction: both, continuous: false, databases: [logs]}\n")
    assert len(both) == 4
    pull = expand(tmp_path, "- {link: c <- b, runs_on: target, continuous: true, databases: [logs]}\n")
    assert pull == [("c", "b", "c", "logs")]


def test_ids_are_deterministic_and_names_keep_links_apart(tmp_path: Path) -> None:
    links = "- {mesh: [a, b], continuous: true}\n- {from: a, to: b, continuous: false, name: nightly}\n"
    first = [
        r.doc_id
        for r in load_topology(
            write(tmp_path, NODES + "links:\n" + textwrap.indent(links, "  "))
        ).replications
    ]
    again = [
        r.doc_id
        for r in load_topology(
            write(tmp_path, NODES + "links:\n" + textwrap.indent(links, "  "))
        ).replications
    ]
    assert first == again and "couchfarm:shared:a->b:nightly" in first


def test_profiles_preset_and_override(tmp_path: Path) -> None:
    extra = (
        "profiles:\n  cellular: {checkpoint_interval: 12000}\n"
        "  rural: {base: satellite, worker_batch_size: 20}\n"
    )
    links = (
        "- {link: a -> b, continuous: true, databases: [logs]}\n"
        "- {link: a -> c, continuous: true, databases: [logs], profile: rural, http_connections: 1}\n"
    )
    topo = load_topology(write(tmp_path, NODES + extra + "links:\n" + textwrap.indent(links, "  ")))
    to_b, to_c = sorted(topo.replications, key=lambda r: r.target)
    assert to_b.options["checkpoint_interval"] == 12_000  # the file's override of the preset
    assert to_b.options["connection_timeout"] == PRESETS["cellular"].connection_timeout
    assert to_c.options["worker_batch_size"] == 20 and to_c.options["http_connections"] == 1
    assert to_c.options["checkpoint_interval"] == PRESETS["satellite"].checkpoint_interval


def test_unstable_presets_checkpoint_often_and_wait_longer_than_a_round_trip() -> None:
    for name in ("cellular", "satellite", "lora"):
        p = PRESETS[name]
        assert 5_000 <= p.checkpoint_interval <= 15_000
        assert p.connection_timeout > p.rtt_ms
        assert p.http_connections <= PRESETS["datacenter"].http_connections


@pytest.mark.parametrize("name", ["mesh-4.yaml", "edge-fleet.yaml"])
def test_shipped_examples_validate(name: str) -> None:
    topo = load_topology(ROOT / "deploy" / "topologies" / name)
    assert topo.replications
