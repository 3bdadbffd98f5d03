"""Links -> one replication per direction and database, with a deterministic ``_id`` and a home node.

Document ids read ``couchfarm:{db}:{source}->{target}``; a link with a ``name`` appends ``:{name}``,
and a filtered link without one appends a short hash of its filter (``:sel-1a2b3c4d``), so a plain and
a filtered replication of the same pair can coexist. A changed filter is a different replication for
CouchDB too (it is part of the replication id), so it gets a new document.

Placement: a document runs on the source (push) unless ``runs_on`` says otherwise; hub links run on
the spokes by default, because edge nodes behind NAT or cellular links can reach the hub but the hub
cannot reach them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from couchfarm.replication.models import OPTION_FIELDS
from couchfarm.replication.profiles import Profile, worst
from couchfarm.replication.topology import (
    ArrowLink,
    ChainLink,
    HubLink,
    Link,
    Loc,
    MeshLink,
    PairLink,
    Problems,
    Replication,
    Topology,
    link_timeout_reason,
    read_topology,
    unknown_node,
    unknown_profile,
)
from couchfarm.yamlfile import read_yaml

Pair = tuple[str, str, str]  #: (source, target, node that runs it)
FILTER_FIELDS = ("doc_ids", "filter", "query_params", "selector")


def load_topology(path: str | Path) -> Topology:
    """Read, check and expand a topology file; ``TopologyError`` lists every problem with its line."""
    data, lines = read_yaml(Path(path))  # YAML errors and a non-mapping top level are reported there
    return parse_topology(data, source=str(path), lines=lines, default_name=Path(path).stem)


def parse_topology(
    data: dict[str, Any],
    *,
    source: str = "<memory>",
    lines: dict[Loc, int] | None = None,
    default_name: str = "default",
) -> Topology:
    """Check and expand a topology mapping (already read from YAML)."""
    topo, problems = read_topology(data, source=source, lines=lines, default_name=default_name)
    if topo is not None:
        topo.replications = expand(topo, problems)
    problems.raise_if_any()
    assert topo is not None  # raise_if_any raised otherwise
    return topo


def expand(topo: Topology, problems: Problems) -> list[Replication]:
    """Every replication the links declare; reference and duplicate problems go to ``problems``."""
    out: list[Replication] = []
    for index, link in topo.links:
        loc: Loc = ("links", index)
        pairs = _pairs(link, loc, topo, problems)
        databases = _databases(link, loc, topo, problems)
        if link.profile is not None and link.profile not in topo.profiles:
            problems.add((*loc, "profile"), unknown_profile(link.profile, topo.profiles))
            continue
        if not _relays_ok(link, loc, topo, problems):
            continue
        for source, target, node in pairs:
            profile = _profile(link, source, target, topo)
            if link.connection_timeout is not None and link.connection_timeout <= profile.rtt_ms:
                problems.add(
                    (*loc, "connection_timeout"), link_timeout_reason(profile, link.connection_timeout)
                )
            out.extend(_replication(link, loc, source, target, node, db, profile) for db in databases)
    _check_duplicates(out, problems)
    _check_security(topo, out, problems)
    return out


def _pairs(link: Link, loc: Loc, topo: Topology, problems: Problems) -> list[Pair]:
    if isinstance(link, HubLink):
        return _hub_pairs(link, loc, topo, problems)
    if link.runs_on in ("hub", "spokes"):
        problems.add((*loc, "runs_on"), f"{link.runs_on!r} only applies to hub links; use source or target")
        return []
    if isinstance(link, MeshLink):
        if not _known(link.mesh, (*loc, "mesh"), topo, problems):
            return []
        ends = [(a, b) for a in link.mesh for b in link.mesh if a != b]
    elif isinstance(link, ChainLink):
        if not _known(link.chain, (*loc, "chain"), topo, problems):
            return []
        ends = list(zip(link.chain, link.chain[1:], strict=False))
        ends += [(b, a) for a, b in ends] if link.direction == "both" else []
    elif isinstance(link, PairLink):
        ends = [(link.from_, link.to)]
        for key, name in (("from", link.from_), ("to", link.to)):
            if not _known([name], (*loc, key), topo, problems, indexed=False):
                ends = []
    else:
        ends = _arrow_ends(link, loc, topo, problems)
    return _place(ends, link, loc, problems)


def _arrow_ends(link: ArrowLink, loc: Loc, topo: Topology, problems: Problems) -> list[tuple[str, str]]:
    arrow = next(a for a in ("<->", "->", "<-") if a in link.link)
    left, right = (part.strip() for part in link.link.split(arrow, 1))
    if left == right:
        problems.add((*loc, "link"), f"{left!r} cannot replicate to itself")
        return []
    if not _known([left, right], (*loc, "link"), topo, problems, indexed=False):
        return []
    return {"->": [(left, right)], "<-": [(right, left)], "<->": [(left, right), (right, left)]}[arrow]


def _place(ends: list[tuple[str, str]], link: Link, loc: Loc, problems: Problems) -> list[Pair]:
    pairs = []
    for source, target in ends:
        if source == target:
            problems.add(loc, f"{source!r} cannot replicate to itself")
            continue
        pairs.append((source, target, target if link.runs_on == "target" else source))
    return pairs


def _hub_pairs(link: HubLink, loc: Loc, topo: Topology, problems: Problems) -> list[Pair]:
    spokes = link.spokes if link.spokes is not None else [n for n in topo.nodes if n != link.hub]
    ok = _known([link.hub], (*loc, "hub"), topo, problems, indexed=False)
    ok = _known(spokes, (*loc, "spokes"), topo, problems) and ok
    if link.hub in spokes:
        problems.add((*loc, "spokes"), f"the hub {link.hub!r} cannot also be a spoke")
        ok = False
    if not ok:
        return []
    pairs = []
    for spoke in spokes:
        ends = [(spoke, link.hub)] if link.direction != "from_hub" else []
        ends += [(link.hub, spoke)] if link.direction != "to_hub" else []
        for source, target in ends:
            runner = {"hub": link.hub, "source": source, "target": target}.get(link.runs_on or "", spoke)
            pairs.append((source, target, runner))
    return pairs


def _known(names: list[str], loc: Loc, topo: Topology, problems: Problems, *, indexed: bool = True) -> bool:
    ok = True
    for i, name in enumerate(names):
        if name in topo.broken:
            ok = False  # already reported where the node is declared
        elif name not in topo.nodes:
            problems.add((*loc, i) if indexed else loc, unknown_node(name, topo.nodes))
            ok = False
    if len(set(names)) != len(names):
        problems.add(loc, "names a node twice")
        ok = False
    return ok


def _databases(link: Link, loc: Loc, topo: Topology, problems: Problems) -> list[str]:
    if link.databases is None:
        return topo.databases
    for i, db in enumerate(link.databases):
        if db not in topo.databases:
            problems.add((*loc, "databases", i), f"{db!r} is not in the topology's databases list")
    return [db for db in link.databases if db in topo.databases]


def _profile(link: Link, source: str, target: str, topo: Topology) -> Profile:
    if link.profile is not None:
        return topo.profiles[link.profile]
    ends = (topo.profiles[topo.nodes[source].profile], topo.profiles[topo.nodes[target].profile])
    return worst(*ends)


def _replication(
    link: Link, loc: Loc, source: str, target: str, node: str, db: str, profile: Profile
) -> Replication:
    options: dict[str, Any] = profile.options()
    options.update(link.model_dump(include=set(OPTION_FIELDS), exclude_unset=True, exclude_none=True))
    doc_id = f"couchfarm:{db}:{source}->{target}" + _suffix(link, options)
    via = tuple(r for r in link.via or () if r not in (source, target))
    return Replication(doc_id, node, source, target, db, link.continuous, options, loc, via, link.relay_after)


def _suffix(link: Link, options: dict[str, Any]) -> str:
    if link.name:
        return f":{link.name}"
    selection = {k: options[k] for k in FILTER_FIELDS if k in options}
    if not selection:
        return ""
    kind = "ids" if "doc_ids" in selection else "filter" if "filter" in selection else "sel"
    digest = hashlib.sha256(json.dumps(selection, sort_keys=True).encode()).hexdigest()[:8]
    return f":{kind}-{digest}"


def _relays_ok(link: Link, loc: Loc, topo: Topology, problems: Problems) -> bool:
    """``via`` names known nodes, once each; a relay cannot apply a filter function or a selector
    (its copy of the database holds more than the link carries, and a filter design document missing
    there kills pouchdb-server), so filtered links take ``doc_ids`` or no relay."""
    if link.via is None:
        if link.relay_after is not None:
            problems.add((*loc, "relay_after"), "only applies with via (the relays to fall back on)")
        return True
    ok = _known(link.via, (*loc, "via"), topo, problems)
    for key in ("filter", "selector"):
        if getattr(link, key) is not None:
            problems.add((*loc, "via"), f"a relayed link cannot use {key} (use doc_ids or no relay)")
            ok = False
    return ok


def _check_security(topo: Topology, reps: list[Replication], problems: Problems) -> None:
    """Every ``security`` entry names a declared database and known nodes, and reaches a node."""
    for db, entry in topo.security.items():
        if db not in topo.databases:
            problems.add(("security", db), f"{db!r} is not in the topology's databases list")
        for node in entry.nodes:
            if node not in topo.nodes and node not in topo.broken:
                problems.add(("security", db, "nodes", node), unknown_node(node, topo.nodes))
        if db in topo.databases and not entry.nodes and not any(r.db == db for r in reps):
            problems.add(
                ("security", db),
                "no link replicates this database, so no node would get it: name nodes under nodes:",
            )


def _identity(rep: Replication) -> str:
    """What makes CouchDB consider two documents the same job (a duplicate fails, 07e)."""
    parts = {k: rep.options.get(k) for k in (*FILTER_FIELDS, "create_target")}
    return json.dumps([rep.node, rep.source, rep.target, rep.db, rep.continuous, parts], sort_keys=True)


def _check_duplicates(reps: list[Replication], problems: Problems) -> None:
    by_id: dict[str, Replication] = {}
    by_identity: dict[str, Replication] = {}
    for rep in reps:
        first = by_id.setdefault(rep.doc_id, rep)
        if first is not rep:
            problems.add(
                rep.origin,
                f"declares {rep.doc_id} again (also from {_label(first.origin)}); "
                "give one of the links a name",
            )
            continue
        twin = by_identity.setdefault(_identity(rep), rep)
        if twin is not rep:
            problems.add(
                rep.origin,
                f"{rep.doc_id} repeats the replication of {twin.doc_id} "
                "(same endpoints, filter and mode): CouchDB fails the second "
                "document as a duplicate",
            )


def _label(loc: Loc) -> str:
    return f"links[{loc[1]}]" if len(loc) > 1 else str(loc)
