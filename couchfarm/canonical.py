"""Canonical JSON: the form of every written body, and the identity of values (the one place for both).

CouchDB derives a revision id from the parent rev and the body *as serialised* (key order and number
formatting change the hash: see tests/fixtures/couchdb/09_revision_ids.json). Writing every merged
body with its keys sorted recursively makes two farms that compute the same merge on two replicas
mint the same revision id, so replication brings them together instead of creating a new conflict.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys in sorted order (lists keep their order)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """The canonical serialisation, and so the identity of a value: sorted keys, no whitespace, UTF-8
    kept (``1`` and ``true`` differ, key order does not). A value JSON has no form for (a date YAML
    read into a strategy's options) counts as its text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any, length: int = 32) -> str:
    """A stable hex digest of a JSON value (md5, as CouchDB uses for revs; not for security)."""
    return hashlib.md5(dumps(value).encode()).hexdigest()[:length]


def same(a: Any, b: Any) -> bool:
    return dumps(a) == dumps(b)
