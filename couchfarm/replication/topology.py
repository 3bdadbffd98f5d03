"""The topology file: nodes, databases, link profiles and links, read with a line for every key.

Every problem is collected (not only the first) and reported as ``file:line: field: message``, so an
operator fixes a file in one pass. Credentials never appear in the file: a node names the environment
variable that holds them (``auth: {env: EDGE1_CREDENTIALS}``), read only when a command needs them.
A node reached over https may say how (``tls: {ca: ..., cert: ..., key: ..., verify: true}``): the
PEM files are read when the file is loaded, so a bad path is reported with its line like any other.
A link may name relays (``via``, see ``relay.py``), and ``security:`` declares each database's
``_security`` object (``security.py``). The expansion of links into documents, and
``load_topology``, live in ``expand.py``.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic import field_validator as validates

from couchfarm.names import db_name_problem
from couchfarm.replication.errors import TopologyError, clean_loc, describe, dotted
from couchfarm.replication.models import ReplicationOptions
from couchfarm.replication.profiles import PRESETS, Profile
from couchfarm.replication.security import SECTION_FIELDS, SecurityEntry
from couchfarm.tls import TLSSpec

Loc = tuple[Any, ...]
NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
LINK_KINDS = ("mesh", "hub", "chain", "from", "link")
STRICT = ConfigDict(extra="forbid", populate_by_name=True)


class NodeAuth(BaseModel):
    """Where a node's credentials come from: ``user:password`` (basic), a token or a cookie value."""

    model_config = STRICT
    env: StrictStr = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    type: Literal["basic", "bearer", "cookie"] = "basic"


class Node(BaseModel):
    """A CouchDB server; ``peer_url`` is how other nodes reach it when that differs from ``url``."""

    model_config = STRICT
    url: StrictStr
    peer_url: StrictStr | None = None
    auth: NodeAuth | None = None
    tls: TLSSpec | None = None  #: CA bundle, client certificate and key, verify (for https nodes)
    profile: StrictStr = "datacenter"

    @validates("url", "peer_url")
    @classmethod
    def _server_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) server URL")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "credentials must not be written in topology files: put 'user:password' in an "
                "environment variable and reference it with auth: {env: NAME}"
            )
        if parts.query or parts.fragment:
            raise ValueError("a server URL has no query string or fragment")
        return value.rstrip("/")


class ProfileSpec(BaseModel):
    """A custom profile or an override of a preset (``base`` names the preset it starts from)."""

    model_config = STRICT
    base: StrictStr | None = None
    rtt_ms: StrictInt | None = Field(None, ge=1, le=3_600_000)
    checkpoint_interval: StrictInt | None = Field(None, ge=1_000, le=86_400_000)
    connection_timeout: StrictInt | None = Field(None, ge=1_000, le=3_600_000)
    http_connections: StrictInt | None = Field(None, ge=1, le=1_000)
    retries_per_request: StrictInt | None = Field(None, ge=0, le=100)
    worker_batch_size: StrictInt | None = Field(None, ge=1, le=100_000)
    worker_processes: StrictInt | None = Field(None, ge=1, le=64)


class LinkBase(ReplicationOptions):
    """What every link kind shares: ``continuous`` must be said; the rest refines the documents."""

    continuous: StrictBool
    name: StrictStr | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    databases: list[StrictStr] | None = Field(None, min_length=1)
    profile: StrictStr | None = None
    runs_on: Literal["source", "target", "hub", "spokes"] | None = None
    via: list[StrictStr] | None = Field(None, min_length=1)  #: relays, in order of preference
    relay_after: float | None = Field(None, gt=0, le=86_400)  #: s a direct link may fail before relaying


class MeshLink(LinkBase):
    mesh: list[StrictStr] = Field(min_length=2)


class HubLink(LinkBase):
    hub: StrictStr
    spokes: list[StrictStr] | None = Field(None, min_length=1)  #: default: every other node
    direction: Literal["both", "to_hub", "from_hub"] = "both"


class ChainLink(LinkBase):
    chain: list[StrictStr] = Field(min_length=2)
    direction: Literal["forward", "both"] = "forward"


class PairLink(LinkBase):
    from_: StrictStr = Field(alias="from")
    to: StrictStr


class ArrowLink(LinkBase):
    link: StrictStr = Field(pattern=r"^\s*\S+\s*(->|<->|<-)\s*\S+\s*$")


Link = MeshLink | HubLink | ChainLink | PairLink | ArrowLink
KIND_MODELS: dict[str, type[LinkBase]] = {
    "mesh": MeshLink,
    "hub": HubLink,
    "chain": ChainLink,
    "from": PairLink,
    "link": ArrowLink,
}


SECTIONS: dict[str, Any] = {
    "name": TypeAdapter(Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]),
    "nodes": TypeAdapter(Annotated[dict[StrictStr, Any], Field(min_length=1)]),
    "databases": TypeAdapter(Annotated[list[StrictStr], Field(min_length=1)]),
    "profiles": TypeAdapter(dict[StrictStr, ProfileSpec]),
    "links": TypeAdapter(Annotated[list[Any], Field(min_length=1)]),
    "security": TypeAdapter(dict[StrictStr, SecurityEntry]),
}
REQUIRED = ("nodes", "databases", "links")
NODE_FIELDS = (  #: for suggestions
    *Node.model_fields,
    *NodeAuth.model_fields,
    *TLSSpec.model_fields,
    *ProfileSpec.model_fields,
    *SECTION_FIELDS,
)


@dataclass(frozen=True)
class Replication:
    """One declared replication: one direction of one link for one database, run by ``node``."""

    doc_id: str
    node: str  #: the node whose _replicator holds the document
    source: str  #: node name
    target: str  #: node name
    db: str
    continuous: bool
    options: dict[str, Any]  #: further _replicator fields: profile tunables, filters, create_target...
    origin: Loc  #: the link's location in the file, for messages
    via: tuple[str, ...] = ()  #: relays to fall back on, the ends themselves left out
    relay_after: float | None = None  #: the link's own relay delay (None: the watch's --relay-after)


@dataclass
class Topology:
    """A parsed topology: models plus the source file and its line map, for messages."""

    name: str
    nodes: dict[str, Node]
    databases: list[str]
    profiles: dict[str, Profile]
    links: list[tuple[int, Link]]  #: (index in the file, link)
    source: str = "<memory>"
    lines: dict[Loc, int] = field(default_factory=dict)
    replications: list[Replication] = field(default_factory=list)  #: filled by ``expand``
    broken: set[str] = field(default_factory=set)  #: declared nodes that failed their own checks
    security: dict[str, SecurityEntry] = field(default_factory=dict)  #: database -> _security

    def on_node(self, node: str) -> list[Replication]:
        """The replications whose documents live on ``node``."""
        return [r for r in self.replications if r.node == node]

    def where(self, loc: Loc) -> str:
        return where(self.source, self.lines, loc)


def line_of(lines: dict[Loc, int], loc: Loc) -> int | None:
    """The file line of ``loc`` or of its closest parent."""
    loc = clean_loc(loc)
    return next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)


def where(source: str, lines: dict[Loc, int], loc: Loc) -> str:
    """``file:line`` for ``loc`` (just ``file`` when the line is unknown)."""
    line = line_of(lines, loc)
    return f"{source}:{line}" if line else source


class Problems:
    """Collects ``(loc, message)`` pairs and raises them together as one ``TopologyError``."""

    def __init__(self, source: str, lines: dict[Loc, int]) -> None:
        self.items: list[tuple[Loc, str]] = []
        self.source, self.lines = source, lines

    def add(self, loc: Loc, message: str) -> None:
        self.items.append((tuple(loc), message))

    def add_validation(self, exc: ValidationError, prefix: Loc, known: tuple[str, ...]) -> None:
        for err in exc.errors():
            self.add((*prefix, *err["loc"]), describe(err, known))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        items = sorted(self.items, key=lambda item: line_of(self.lines, item[0]) or 0)
        lines = [
            f"{where(self.source, self.lines, loc)}: {dotted(loc) or '(file)'}: {msg}" for loc, msg in items
        ]
        first = items[0][0]
        head = f"{len(lines)} problem(s) in the topology:\n  " if len(lines) > 1 else ""
        raise TopologyError(
            head + "\n  ".join(lines),
            field=dotted(first),
            source=where(self.source, self.lines, first),
            problems=lines,
        )


def read_topology(
    data: dict[str, Any],
    *,
    source: str = "<memory>",
    lines: dict[Loc, int] | None = None,
    default_name: str = "default",
) -> tuple[Topology | None, Problems]:
    """Check a topology mapping's shape and resolve its profiles; problems are collected, not raised.

    Each section is validated on its own so that one bad node does not hide a bad link.
    """
    problems = Problems(source, lines or {})
    sections = _sections(data, problems)
    if any(key not in sections for key in REQUIRED):
        return None, problems
    nodes, broken = _nodes(sections["nodes"], problems)
    name = sections.get("name") or default_name
    topo = Topology(name, nodes, sections["databases"], {}, [], source, lines or {}, broken=broken)
    topo.security = sections.get("security", {})
    _check_names(topo, problems)
    topo.profiles = _resolve_profiles(sections.get("profiles", {}), problems)
    _check_node_profiles(topo, problems)
    raw_links = sections["links"]
    topo.links = [(i, link) for i, raw in enumerate(raw_links) if (link := _parse_link(i, raw, problems))]
    return topo, problems


def _sections(data: dict[str, Any], problems: Problems) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in SECTIONS:
            problems.add((key,), _unknown("section", str(key), SECTIONS))
            continue
        try:
            out[key] = SECTIONS[key].validate_python(value)
        except ValidationError as exc:
            problems.add_validation(exc, (key,), NODE_FIELDS)
    for key in REQUIRED:
        if key not in data:
            problems.add((key,), "is required")
    return out


def _nodes(raw: dict[str, Any], problems: Problems) -> tuple[dict[str, Node], set[str]]:
    """Each node on its own: a bad node is reported once and skipped, not reported again per link."""
    nodes, broken = {}, set()
    for name, value in raw.items():
        try:
            nodes[name] = Node.model_validate(value)
        except ValidationError as exc:
            problems.add_validation(exc, ("nodes", name), NODE_FIELDS)
            broken.add(name)
    return nodes, broken


def _check_names(topo: Topology, problems: Problems) -> None:
    for name in topo.nodes:
        if not NODE_NAME.match(name):
            problems.add(("nodes", name), f"node name {name!r} must be lower-case letters, digits, - or _")
    for i, db in enumerate(topo.databases):
        problem = db_name_problem(db)
        if problem:
            problems.add(("databases", i), problem)
    if len(set(topo.databases)) != len(topo.databases):
        problems.add(("databases",), "lists a database twice")


def _resolve_profiles(specs: dict[str, ProfileSpec], problems: Problems) -> dict[str, Profile]:
    out = dict(PRESETS)
    for name, spec in specs.items():
        base_name = spec.base or (name if name in PRESETS else None)
        if base_name not in PRESETS:
            problems.add(
                ("profiles", name, "base") if spec.base else ("profiles", name),
                f"needs base: one of {', '.join(PRESETS)} (got {base_name!r})",
            )
            continue
        values = spec.model_dump(exclude={"base"}, exclude_none=True)
        profile = PRESETS[base_name].derive(name, values)
        if profile.connection_timeout <= profile.rtt_ms:
            problems.add(("profiles", name, "connection_timeout"), _timeout_reason(profile))
        out[name] = profile
    return out


def _timeout_reason(profile: Profile, timeout: int | None = None) -> str:
    value = profile.connection_timeout if timeout is None else timeout
    return (
        f"{value} ms is not above the {profile.name} profile's expected round trip of {profile.rtt_ms} "
        "ms: every slow request would time out and be retried"
    )


def _check_node_profiles(topo: Topology, problems: Problems) -> None:
    for name, node in topo.nodes.items():
        if node.profile not in topo.profiles:
            problems.add(("nodes", name, "profile"), _unknown("profile", node.profile, topo.profiles))
            topo.broken.add(name)


def _parse_link(index: int, raw: Any, problems: Problems) -> Link | None:
    loc: Loc = ("links", index)
    if not isinstance(raw, dict):
        problems.add(loc, f"a link must be a mapping (got {raw!r})")
        return None
    kinds = [k for k in LINK_KINDS if k in raw]
    if len(kinds) != 1:
        found = f" (found {', '.join(kinds)})" if kinds else ""
        problems.add(loc, f"a link needs exactly one of mesh, hub, chain, from/to, link{found}")
        return None
    model = KIND_MODELS[kinds[0]]
    try:
        return model.model_validate(raw)  # type: ignore[return-value]
    except ValidationError as exc:
        known = tuple(f.alias or n for n, f in model.model_fields.items())
        problems.add_validation(exc, loc, known)
        return None


def _unknown(what: str, value: str, known: Any) -> str:
    hint = difflib.get_close_matches(value, list(known), n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else f" (known: {', '.join(sorted(known))})"
    return f"unknown {what} {value!r}{suggestion}"


def unknown_node(value: str, nodes: dict[str, Node]) -> str:
    """The message for a link that names a node the file does not declare."""
    return _unknown("node", value, nodes)


def unknown_profile(value: str, profiles: dict[str, Profile]) -> str:
    return _unknown("profile", value, profiles)


def link_timeout_reason(profile: Profile, timeout: int) -> str:
    return _timeout_reason(profile, timeout)
