"""The values that flow through couchfarm: leaves, conflict sets, resolutions, outcomes, bulk results."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

#: Marks the tombstones couchfarm writes over losing leaves (``{"_deleted": true, TOMBSTONE_FIELD: true}``),
#: so that a later read can tell resolution leftovers from deletions made by users.
TOMBSTONE_FIELD = "couchfarm_tombstone"


@dataclass(frozen=True, order=True)
class Rev:
    """A revision id ``N-hash``: generation and hash."""

    generation: int
    hash: str

    @classmethod
    def parse(cls, rev: str) -> Rev:
        gen, sep, digest = rev.partition("-")
        if not sep or not gen.isdigit() or not digest:
            raise ValueError(f"malformed revision id {rev!r} (want N-hash)")
        return cls(int(gen), digest)

    def __str__(self) -> str:
        return f"{self.generation}-{self.hash}"


def winner_key(rev: str, deleted: bool) -> tuple[bool, int, str]:
    """CouchDB's winner order, largest first: live before deleted, then higher generation, then the
    higher hash compared as a string (``2-eee`` over ``2-bbb``)."""
    parsed = Rev.parse(rev)
    return (not deleted, parsed.generation, parsed.hash)


@dataclass(frozen=True)
class Leaf:
    """One leaf revision of a document: its body (without ``_`` members) and its ancestry."""

    rev: str
    body: dict[str, Any]
    deleted: bool = False
    ancestry: tuple[str, ...] = ()  #: revs from this leaf back to the oldest one the server kept
    attachments: dict[str, Any] = field(default_factory=dict)  #: ``_attachments`` exactly as read

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Leaf:
        revisions = doc.get("_revisions")
        ancestry: tuple[str, ...] = ()
        if revisions:
            start = int(revisions["start"])
            ancestry = tuple(f"{start - i}-{h}" for i, h in enumerate(revisions["ids"]))
        return cls(
            rev=doc["_rev"],
            body={k: v for k, v in doc.items() if not k.startswith("_")},
            deleted=bool(doc.get("_deleted", False)),
            ancestry=ancestry,
            attachments=dict(doc.get("_attachments") or {}),
        )

    @property
    def generation(self) -> int:
        return Rev.parse(self.rev).generation


@dataclass(frozen=True)
class ConflictSet:
    """Every leaf of one document as read in one go; ``base`` is the last common ancestor's body
    (``base_attachments`` its attachment stubs) when the engine read it, else None."""

    db: str
    doc_id: str
    leaves: tuple[Leaf, ...]
    base: dict[str, Any] | None = None
    base_attachments: dict[str, Any] | None = None
    #: deletion state of non-leaf revisions the engine looked up (True: deleted, False: live;
    #: absent: not asked, or its body is gone on this server); see ``resolvers/deletions.py``
    history: Mapping[str, bool] = field(default_factory=dict)
    #: why the leaves as read cannot be trusted (an error entry, nothing read for a document that
    #: exists): the document is retried, never resolved from a partial read
    read_error: str | None = None

    @property
    def live(self) -> tuple[Leaf, ...]:
        """Live leaves, in CouchDB's winner order (the order itself never feeds a strategy)."""
        return tuple(sorted((leaf for leaf in self.leaves if not leaf.deleted), key=_leaf_key, reverse=True))

    @property
    def deleted(self) -> tuple[Leaf, ...]:
        return tuple(sorted((leaf for leaf in self.leaves if leaf.deleted), key=_leaf_key, reverse=True))

    @property
    def winner(self) -> Leaf | None:
        """The leaf CouchDB shows readers (may be deleted when every leaf is)."""
        return max(self.leaves, key=_leaf_key) if self.leaves else None

    @property
    def winner_rev(self) -> str | None:
        return self.winner.rev if self.winner else None

    @property
    def revs(self) -> list[str]:
        return sorted(leaf.rev for leaf in self.leaves)


def _leaf_key(leaf: Leaf) -> tuple[bool, int, str]:
    return winner_key(leaf.rev, leaf.deleted)


@dataclass(frozen=True)
class Resolution:
    """What a strategy decided: a merged body, a delete, or ``unresolvable`` with a reason.

    Attachments follow the body (``couchfarm/attachments.py``): ``attachments`` names, per
    attachment, the rev of the live leaf whose copy the merge keeps (None: drop it); a name it does
    not list comes from the first leaf of ``chosen`` (the leaves whose body the strategy took, the
    most preferred first) that has it.
    """

    body: dict[str, Any] | None = None
    delete: bool = False
    unresolvable: str | None = None
    chosen: tuple[str, ...] = ()
    attachments: Mapping[str, str | None] | None = None

    @classmethod
    def merged(
        cls,
        body: dict[str, Any],
        chosen: tuple[str, ...] = (),
        attachments: Mapping[str, str | None] | None = None,
    ) -> Resolution:
        return cls(body=body, chosen=chosen, attachments=attachments)

    @classmethod
    def deletion(cls) -> Resolution:
        return cls(delete=True)

    @classmethod
    def fail(cls, reason: str) -> Resolution:
        return cls(unresolvable=reason)


class Outcome(str, Enum):
    RESOLVED = "resolved"  # a merged winner and/or tombstones were written
    NOOP = "noop"  # nothing to do: one live leaf (or none) when read; nothing written
    RETRY = "retry"  # a 409 or a transient failure: re-read and resolve again later
    DEAD_LETTERED = "dead_lettered"  # cannot be resolved automatically; kept with its reason


@dataclass(frozen=True)
class BulkItemResult:
    """One item of a ``_bulk_docs`` answer."""

    id: str
    rev: str | None = None
    ok: bool = False
    error: str | None = None
    reason: str | None = None

    @classmethod
    def parse(cls, item: dict[str, Any]) -> BulkItemResult:
        return cls(
            id=str(item.get("id", "")),
            rev=item.get("rev"),
            ok=bool(item.get("ok", False)) or ("error" not in item and "rev" in item),
            error=item.get("error"),
            reason=item.get("reason"),
        )

    @property
    def kind(self) -> str:
        """``ok``, ``conflict``, ``forbidden``, ``unauthorized`` or ``other``."""
        if self.ok:
            return "ok"
        if self.error in ("conflict", "forbidden", "unauthorized"):
            return str(self.error)
        return "other"
