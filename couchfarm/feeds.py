"""Typed `_changes` rows and the parsers for every feed mode.

Seqs are opaque JSON values: stored and sent back verbatim, never parsed or compared (CouchDB 3
seqs are strings like ``"5-g1AAAA…"`` whose numeric prefix is neither unique nor monotonic;
pouchdb-server sends integers). ``pending`` is optional: CouchDB sends it, pouchdb-server does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Seq = Any  #: an opaque JSON value (str on CouchDB 3, int on pouchdb-server, None with seq_interval)


@dataclass(frozen=True)
class ChangeRow:
    """One row of a `_changes` feed."""

    id: str
    seq: Seq
    revs: tuple[str, ...]  #: leaf revs listed in ``changes`` (all leaves with ``style=all_docs``)
    deleted: bool = False
    doc: dict[str, Any] | None = None

    @classmethod
    def parse(cls, row: dict[str, Any]) -> ChangeRow:
        return cls(
            id=row["id"],
            seq=row.get("seq"),
            revs=tuple(c["rev"] for c in row.get("changes", ()) if "rev" in c),
            deleted=bool(row.get("deleted", False)),
            doc=row.get("doc"),
        )

    @property
    def conflicts(self) -> tuple[str, ...]:
        """``_conflicts`` of the included doc (needs ``include_docs`` and ``conflicts``)."""
        return tuple((self.doc or {}).get("_conflicts", ()))


@dataclass(frozen=True)
class ChangesPage:
    """A complete normal or longpoll response."""

    results: list[ChangeRow]
    last_seq: Seq
    pending: int | None = None  #: CouchDB only; with ``_doc_ids`` it never reaches 0: never loop on it
    timed_out: bool = False  #: the client-side deadline ended a longpoll that the server left open

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> ChangesPage:
        return cls(
            results=[ChangeRow.parse(r) for r in payload.get("results", [])],
            last_seq=payload.get("last_seq"),
            pending=payload.get("pending"),
        )


@dataclass(frozen=True)
class FeedEnd:
    """The final line of a continuous feed (only when the server ends it: ``timeout`` without heartbeat)."""

    last_seq: Seq
    pending: int | None = None


@dataclass
class LineSplitter:
    """Splits streamed bytes into non-empty lines; empty lines are heartbeats."""

    buffer: bytes = b""
    heartbeats: int = 0
    _pending: list[bytes] = field(default_factory=list)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            line = line.strip()
            if line:
                yield line
            else:
                self.heartbeats += 1


def parse_continuous_line(line: bytes) -> ChangeRow | FeedEnd:
    """One line of a continuous feed: a change row or the final ``last_seq`` line."""
    payload = json.loads(line)
    if "id" not in payload and "last_seq" in payload:
        return FeedEnd(last_seq=payload["last_seq"], pending=payload.get("pending"))
    return ChangeRow.parse(payload)
