"""Errors of the replication control plane, under the one error root of ``couchfarm.errors``.

::

    FarmError
    ├── ConfigError
    │   ├── ReplicationDocError    a _replicator document is malformed: names the document and the field
    │   └── TopologyError          a topology file is malformed: lists every problem as file:line + field
    ├── ReplicationBlocked         the server cannot take a change safely (pouchdb-server limits)
    └── SyncFailed                 a manual sync could not start or did not complete: says why

``describe`` turns one pydantic error into a sentence that says what is wrong *and why it matters*,
because CouchDB itself either ignores a bad field silently or answers with a raw Erlang term.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from couchfarm.errors import ConfigError, FarmError

#: Fields CouchDB (or pouchdb-server) writes into a document; a user must never send them.
SERVER_WRITTEN = (
    "_replication_id",
    "_replication_state",
    "_replication_state_time",
    "_replication_state_reason",
    "_replication_stats",
    "owner",
)


class ReplicationDocError(ConfigError):
    """Raised when a ``_replicator`` document is malformed; ``source`` is the document id."""


class TopologyError(ConfigError):
    """Raised when a topology file is malformed; ``problems`` holds one line per problem."""

    problems: list[str]

    def __init__(
        self, message: str = "", *, field: str = "", source: str = "", problems: list[str] | None = None
    ) -> None:
        FarmError.__init__(self, message, field=field, source=source, problems=list(problems or []))


class ReplicationBlocked(FarmError):
    """Raised when a change would crash or be refused by the server (e.g. a running pouchdb job)."""

    doc_id: str
    node: str

    def __init__(self, message: str = "", *, doc_id: str = "", node: str = "") -> None:
        super().__init__(message, doc_id=doc_id, node=node)


class SyncFailed(FarmError):
    """Raised when ``replication sync`` cannot start: a database is missing, credentials are refused,
    or the document id is taken by someone else's document."""

    doc_id: str

    def __init__(self, message: str = "", *, doc_id: str = "") -> None:
        super().__init__(message, doc_id=doc_id)


def dotted(loc: Iterable[Any]) -> str:
    """``("links", 0, "continuous")`` -> ``links[0].continuous``; union tags (``<url>``) are dropped."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("<"):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def clean_loc(loc: Iterable[Any]) -> tuple[Any, ...]:
    """The location without union tags, as a key into a YAML line map."""
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("<")))


def describe(err: Mapping[str, Any], known: Iterable[str] = ()) -> str:
    """One pydantic error as a sentence; ``known`` are the valid field names, for suggestions."""
    kind, loc = err["type"], tuple(err["loc"])
    field = str(clean_loc(loc)[-1]) if clean_loc(loc) else ""
    got = err.get("input")
    if kind == "extra_forbidden":
        return _unknown_field(field, known)
    if kind == "missing":
        return "is required"
    simple = {
        "bool_type": "must be true or false",
        "int_type": "must be a whole number",
        "string_type": "must be a string",
        "dict_type": "must be a mapping",
        "list_type": "must be a list",
        "model_type": "must be a mapping",
    }
    if kind in simple:
        return f"{simple[kind]} (got {_show(got)})"
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short"):
        return f"{msg[0].lower()}{msg[1:]} (got {_show(got)})"
    return msg


def _unknown_field(field: str, known: Iterable[str]) -> str:
    if field in SERVER_WRITTEN or field.startswith("_replication_"):
        return (
            "is written by the server, never by you: CouchDB treats a document that already carries "
            "_replication_state as finished and never runs it"
        )
    if field == "cancel":
        return "only POST /_replicate takes cancel; a _replicator document is stopped by deleting it"
    hint = difflib.get_close_matches(field, list(known), n=1)
    why = "unknown field: CouchDB ignores unknown fields without a word, so a typo silently changes the job"
    return f"{why} (did you mean {hint[0]!r}?)" if hint else why


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
