"""CouchDB's rule for database names, shared by the settings (names and globs) and topologies."""

from __future__ import annotations

import re

#: CouchDB's documented rule (``PUT /{db}``): a letter first, then these; at most 238 characters.
DB_NAME = re.compile(r"^[a-z][a-z0-9_$()+/-]*$")
MAX_LENGTH = 238
SYSTEM_DBS = ("_users", "_replicator", "_global_changes")
_GLOB_PART = re.compile(r"\[!?[^\]]+\]|[*?]")


def is_glob(name: str) -> bool:
    return any(c in name for c in "*?[")


def db_name_problem(name: str, *, globs: bool = False) -> str | None:
    """Why ``name`` can name no CouchDB database (with ``globs``: match none), or None."""
    if name in SYSTEM_DBS:
        return None
    # A glob is checked as the name it would match if each wildcard stood for one letter.
    literal = _GLOB_PART.sub("a", name) if globs else name
    if DB_NAME.match(literal):
        if len(name) > MAX_LENGTH and literal == name:
            return f"{name[:40]!r}... is longer than CouchDB's {MAX_LENGTH} characters"
        return None
    glob_note = " (a glob may also use * ? and [...])" if globs else ""
    return (
        f"{name!r} is not a legal CouchDB database name: a lower-case letter first, then lower-case "
        f"letters, digits and _ $ ( ) + / -{glob_note}"
    )
