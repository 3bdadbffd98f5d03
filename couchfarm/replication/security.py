"""``_security`` objects as a topology declares them: who administers and who may use a database.

CouchDB 3 reads ``members`` as the users allowed to read and write a database; when both its
``names`` and ``roles`` are empty the database is open to every user (anonymous ones too, unless the
server sets ``require_valid_user``), so an empty ``members`` is the widest setting there is. ``admins``
may change design documents and ``_security`` itself (server admins always may). A new CouchDB 3
database holds ``{"admins": {"roles": ["_admin"]}, "members": {"roles": ["_admin"]}}`` (recorded in
08); pouchdb-server answers ``{}``.

Names and roles are compared as sets (their order means nothing to CouchDB), and every other
top-level field a server holds is kept when couchfarm writes the object.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

STRICT = ConfigDict(extra="forbid")
SECTIONS = ("admins", "members")
KINDS = ("names", "roles")
Normal = dict[str, dict[str, list[str]]]  #: {section: {kind: sorted list}}


class Principals(BaseModel):
    """``names`` (user names) and ``roles``; each listed once."""

    model_config = STRICT
    names: list[StrictStr] = Field(default_factory=list)
    roles: list[StrictStr] = Field(default_factory=list)

    @field_validator("names", "roles")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError("an empty string names nobody")
        twice = sorted({item for item in value if value.count(item) > 1})
        if twice:
            raise ValueError(f"lists {twice[0]!r} twice")
        return value


class SecurityObject(BaseModel):
    """A whole ``_security`` object: a section left out is empty (nobody), not "keep what is there"."""

    model_config = STRICT
    admins: Principals = Field(default_factory=Principals)
    members: Principals = Field(default_factory=Principals)

    def normal(self) -> Normal:
        return normalize(self.model_dump())


class SecurityOverride(BaseModel):
    """A node's own ``admins`` and/or ``members``; what it leaves out comes from the database entry."""

    model_config = STRICT
    admins: Principals | None = None
    members: Principals | None = None


class SecurityEntry(SecurityObject):
    """One database under ``security:``; ``nodes`` gives some nodes their own sections."""

    nodes: dict[StrictStr, SecurityOverride] = Field(default_factory=dict)

    def for_node(self, node: str) -> SecurityObject:
        own = self.nodes.get(node)
        return SecurityObject(
            admins=own.admins if own is not None and own.admins is not None else self.admins,
            members=own.members if own is not None and own.members is not None else self.members,
        )


SECTION_FIELDS = (*SecurityEntry.model_fields, *Principals.model_fields)  #: for suggestions


def normalize(raw: Any) -> Normal:
    """What a server holds, as sorted lists per section and kind; anything malformed reads as empty."""
    out: Normal = {}
    source = raw if isinstance(raw, dict) else {}
    for section in SECTIONS:
        part = source.get(section)
        part = part if isinstance(part, dict) else {}
        out[section] = {}
        for kind in KINDS:
            items = part.get(kind)
            out[section][kind] = sorted({str(i) for i in items}) if isinstance(items, list) else []
    return out


def is_empty(normal: Normal, section: str) -> bool:
    return not any(normal[section][kind] for kind in KINDS)


def widening(where: str, before: Normal, after: Normal) -> dict[str, str]:
    """Why a change from ``before`` to ``after`` needs ``--allow-widen``: the sections it would empty
    (``members``, ``admins``), each with a warning; empty when it needs nothing."""
    out = {}
    if not is_empty(before, "members") and is_empty(after, "members"):
        out["members"] = (
            f"{where}: removes every member ({_who(before['members'])}): on CouchDB a database without "
            "members can be read and written by every user, anonymous ones too unless the server "
            "requires a valid user"
        )
    if not is_empty(before, "admins") and is_empty(after, "admins"):
        out["admins"] = (
            f"{where}: removes every database admin ({_who(before['admins'])}): only server admins "
            "could then change its design documents and _security"
        )
    return out


def body_for(declared: SecurityObject, current: Any) -> dict[str, Any]:
    """The object to write: the declared sections over every other field the server keeps."""
    extra = {k: v for k, v in current.items() if k not in SECTIONS} if isinstance(current, dict) else {}
    return {**extra, **declared.model_dump()}


def _who(part: dict[str, list[str]]) -> str:
    return "; ".join(f"{kind} {', '.join(part[kind])}" for kind in KINDS if part[kind])
