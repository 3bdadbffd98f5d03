"""Which leaf's copy of each attachment a merge keeps, and how the winner write carries it (pure).

Attachments follow the body the strategy chose (docs/resolution-rules.md), name by name:

1. the strategy's explicit choice (``Resolution.attachments``: ``fields`` by its ``_attachments``
   rule, a ``custom`` function's ``_attachments``, ``conflicts pick/edit --attachments-from``);
2. else the first leaf of ``Resolution.chosen`` (the leaves whose body the strategy took, most
   preferred first) that has the name;
3. else, when every live leaf that has the name holds the same bytes (digest and content type),
   that copy: a name no chosen leaf has is kept, never dropped silently;
4. else the merge is refused with a reason naming the attachment and the leaves that disagree.

The write is a child of CouchDB's current winner: a copy identical to the winner's own goes back as
the winner's stub exactly as read (CouchDB matches stubs by name in the parent revision, and
pouchdb-server needs the full stub); every other copy is sent inline (``data``), because a stub for
an attachment the parent lacks is refused with 412 ``missing_stub``. Names are written in sorted
order and the content type comes from the chosen leaf's stub, so two replicas resolving the same
leaves send identical writes and mint identical revisions.
"""

from __future__ import annotations

from typing import Any

from couchfarm.errors import ResolverError
from couchfarm.models import Leaf, Resolution


class AttachmentChoiceError(ResolverError):
    """Raised when the leaves disagree on an attachment and nothing says which copy to keep."""


def same_copy(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two stubs describe the same bytes under the same content type."""
    return bool(a.get("digest")) and (a.get("digest"), a.get("content_type")) == (
        b.get("digest"),
        b.get("content_type"),
    )


def agree(name: str, holders: list[Leaf]) -> bool:
    """Every holder has the same copy of ``name``."""
    first = holders[0].attachments[name]
    return all(h is holders[0] or same_copy(h.attachments[name], first) for h in holders)


def sources(live: tuple[Leaf, ...], resolution: Resolution) -> dict[str, Leaf]:
    """Per attachment name of the merge, the live leaf whose copy it keeps (rules 1-4 above)."""
    by_rev = {leaf.rev: leaf for leaf in live}
    explicit = dict(resolution.attachments or {})
    chosen = [by_rev[rev] for rev in resolution.chosen if rev in by_rev]
    out: dict[str, Leaf] = {}
    for name in sorted({name for leaf in live for name in leaf.attachments} | set(explicit)):
        holders = [leaf for leaf in live if name in leaf.attachments]
        if name in explicit:
            rev = explicit[name]
            if rev is None:
                continue
            leaf = by_rev.get(rev)
            if leaf is None or name not in leaf.attachments:
                raise AttachmentChoiceError(
                    f"attachment {name!r} is to come from {rev}, which is not a live leaf holding it"
                    f" (holders: {', '.join(h.rev for h in holders) or 'none'})"
                )
            out[name] = leaf
        elif source := next((leaf for leaf in chosen if name in leaf.attachments), None):
            out[name] = source
        elif agree(name, holders):
            out[name] = holders[0]
        else:
            raise AttachmentChoiceError(
                f"attachment {name!r} differs between leaves {', '.join(h.rev for h in holders)} "
                "and the strategy did not choose one of them"
            )
    return out


def winner_attachments(winner: Leaf, chosen: dict[str, Leaf]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The ``_attachments`` of a write on ``winner`` and the (name, rev) copies to fetch and inline."""
    out: dict[str, Any] = {}
    inline: list[tuple[str, str]] = []
    for name in sorted(chosen):
        stub = chosen[name].attachments[name]
        own = winner.attachments.get(name)
        if own is not None and same_copy(own, stub):
            out[name] = dict(own)
        else:
            out[name] = {"content_type": stub.get("content_type")} if stub.get("content_type") else {}
            inline.append((name, chosen[name].rev))
    return out, inline


def unchanged(winner: Leaf, chosen: dict[str, Leaf]) -> bool:
    """The winner already holds exactly these copies and no other attachment."""
    return set(chosen) == set(winner.attachments) and all(
        same_copy(winner.attachments[name], leaf.attachments[name]) for name, leaf in chosen.items()
    )


def describe(chosen: dict[str, Leaf]) -> dict[str, str]:
    """Attachment name -> the rev whose copy the merge keeps (for dry runs and ``--json``)."""
    return {name: leaf.rev for name, leaf in sorted(chosen.items())}
