"""A document's live leaves compared field by field, against their common ancestor when it is known.

Nested objects are opened into paths (``address.city``), so a change deep inside one shows as that
path rather than as the whole object; lists and scalars are compared whole. Each cell says how the
leaf's value relates to the ancestor's: ``same``, ``changed``, ``added`` (not in the ancestor) or
``removed`` (in the ancestor, not in this leaf). Without an ancestor (compacted away, or history
that does not meet) the cells only say whether they differ from CouchDB's current winner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from couchfarm.canonical import same
from couchfarm.manual import ABSENT
from couchfarm.models import Leaf

Path = tuple[str, ...]


@dataclass(frozen=True)
class Cell:
    value: Any  #: ``ABSENT`` when the leaf has no such path
    status: str  #: same, changed, added, removed (against the ancestor); same or differs without one


@dataclass(frozen=True)
class Row:
    path: Path
    base: Any  #: the ancestor's value (``ABSENT``: none, or no ancestor)
    cells: tuple[Cell, ...]  #: one per live leaf, CouchDB's winner first
    proposed: Any  #: the strategy's value (``ABSENT``: not in the proposal, or no proposal)
    differs: bool  #: the leaves do not all agree

    @property
    def name(self) -> str:
        return ".".join(self.path)


def flatten(body: dict[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """``{"a": {"b": 1}, "c": [1]}`` -> ``{("a", "b"): 1, ("c",): [1]}``; an empty object stays a value."""
    out: dict[Path, Any] = {}
    for key, value in body.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, (*prefix, key)))
        else:
            out[(*prefix, key)] = value
    return out


def _equal(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    return same(a, b)


def _status(value: Any, base: Any, winner: Any, has_base: bool) -> str:
    if not has_base:
        return "same" if _equal(value, winner) else "differs"
    if _equal(value, base):
        return "same"
    if base is ABSENT:
        return "added"
    return "removed" if value is ABSENT else "changed"


def compare(
    live: tuple[Leaf, ...], base: dict[str, Any] | None, proposed: dict[str, Any] | None
) -> list[Row]:
    """One row per path found in a leaf, the ancestor or the proposal (in order of first appearance)."""
    flats = [flatten(leaf.body) for leaf in live]
    flat_base = flatten(base) if base is not None else {}
    flat_proposed = flatten(proposed) if proposed is not None else {}
    paths = list(dict.fromkeys(p for f in [*flats, flat_base, flat_proposed] for p in f))
    rows = []
    for path in paths:
        values = [f.get(path, ABSENT) for f in flats]
        ancestor = flat_base.get(path, ABSENT)
        cells = tuple(Cell(v, _status(v, ancestor, values[0], base is not None)) for v in values)
        differs = any(not _equal(values[0], v) for v in values[1:])
        rows.append(Row(path, ancestor, cells, flat_proposed.get(path, ABSENT), differs))
    return rows


def attachments(leaf: Leaf) -> list[dict[str, Any]]:
    """A leaf's attachments as a page lists them: name, type, size, digest."""
    return [
        {
            "name": name,
            "content_type": stub.get("content_type", ""),
            "length": stub.get("length"),
            "digest": stub.get("digest", ""),
        }
        for name, stub in sorted(leaf.attachments.items())
    ]
