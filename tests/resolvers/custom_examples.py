"""Example user functions for the ``custom`` strategy (imported by path in the tests)."""

from __future__ import annotations

from typing import Any

from couchfarm.models import ConflictSet


def total(conflict: ConflictSet) -> dict[str, Any]:
    """Adds up ``n`` over the leaves: an order-independent merge."""
    return {"n": sum(leaf.body.get("n", 0) for leaf in conflict.leaves), "_id": "ignored", "_rev": "1-x"}


total.version = "2"  # type: ignore[attr-defined]


def give_up(conflict: ConflictSet) -> None:
    return None


def delete(conflict: ConflictSet) -> dict[str, Any]:
    return {"_deleted": True}


def boom(conflict: ConflictSet) -> dict[str, Any]:
    raise KeyError("price")


def wrong_type(conflict: ConflictSet) -> list[int]:
    return [1, 2]


def not_json(conflict: ConflictSet) -> dict[str, Any]:
    return {"when": object()}


def revs(conflict: ConflictSet) -> dict[str, Any]:
    """What the function was given: the candidate revs in the order it saw them."""
    return {"revs": [leaf.rev for leaf in conflict.leaves]}


def first_body(conflict: ConflictSet) -> dict[str, Any]:
    """The body of the leaf with the highest rev: attachments follow that leaf."""
    return dict(max(conflict.leaves, key=lambda leaf: leaf.rev).body)


def new_body(conflict: ConflictSet) -> dict[str, Any]:
    """A new body no leaf has: the function must say whose attachments to keep."""
    return {"merged": sorted(leaf.rev for leaf in conflict.leaves)}


def with_attachment_choice(conflict: ConflictSet) -> dict[str, Any]:
    """A new body, with the attachments chosen by name (``2-000``'s f.txt, no g.bin)."""
    return {**new_body(conflict), "_attachments": {"f.txt": "2-000", "g.bin": None}}


class Merger:
    @staticmethod
    def first_rev(conflict: ConflictSet) -> dict[str, Any]:
        return {"rev": min(leaf.rev for leaf in conflict.leaves)}


NOT_CALLABLE = 42
