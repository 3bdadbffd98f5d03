"""Builders for leaves and conflict sets, and hypothesis generators of them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import strategies as st

from couchfarm.models import TOMBSTONE_FIELD, ConflictSet, Leaf, Resolution
from couchfarm.resolvers import build_resolver, parse_strategy
from couchfarm.settings import StrategySpec


def leaf(
    rev: str,
    body: dict[str, Any] | None = None,
    *,
    deleted: bool = False,
    parents: tuple[str, ...] = (),
    attachments: dict[str, Any] | None = None,
) -> Leaf:
    """A leaf; ``parents`` are the revisions before it, newest first (its ``_revisions``)."""
    ancestry = (rev, *parents) if parents else ()
    return Leaf(
        rev=rev, body=dict(body or {}), deleted=deleted, ancestry=ancestry, attachments=attachments or {}
    )


def tombstone(rev: str, *, ours: bool = False, parents: tuple[str, ...] = ()) -> Leaf:
    """A deleted leaf; ``ours`` marks it as a couchfarm resolution tombstone."""
    return leaf(rev, {TOMBSTONE_FIELD: True} if ours else {}, deleted=True, parents=parents)


def conflict(*leaves: Leaf, base: dict[str, Any] | None = None, doc_id: str = "doc") -> ConflictSet:
    return ConflictSet(db="db", doc_id=doc_id, leaves=tuple(leaves), base=base)


def resolve(spec: str | StrategySpec, *leaves: Leaf, base: dict[str, Any] | None = None) -> Resolution:
    built = build_resolver(parse_strategy(spec) if isinstance(spec, str) else spec)
    return built.resolve(conflict(*leaves, base=base))


def body_of(spec: str | StrategySpec, *leaves: Leaf, base: dict[str, Any] | None = None) -> dict[str, Any]:
    result = resolve(spec, *leaves, base=base)
    assert result.body is not None, result
    return result.body


def dump(result: Resolution) -> str:
    return json.dumps(dataclasses.asdict(result), sort_keys=True)


# --- hypothesis -------------------------------------------------------------------------------

NODES = ("a", "b", "c")
STAMPS = (
    "2024-05-01T10:00:00Z",
    "2024-05-01T12:00:00+02:00",  # the same instant as the one above
    "2024-05-01T10:00:00.000001Z",
    "2024-05-01T09:59:59-00:30",
    "2024-05-01T10:00:00",  # no offset: UTC
    "not a time",
)
STATUSES = ("cancelled", "shipped", "weird", "lost")

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.sampled_from(["x", "y", "z"])
stamps = st.sampled_from(STAMPS) | st.integers(1714557600, 1714557602)
clocks = st.dictionaries(st.sampled_from(NODES), st.integers(0, 3), max_size=3)
records = st.fixed_dictionaries({"id": st.integers(0, 3)}, optional={"qty": st.integers(0, 2)})


#: Bodies with the fields every strategy reads, each sometimes missing or malformed.
BODIES = st.fixed_dictionaries(
    {},
    optional={
        "updated_at": stamps,
        "n": st.integers(0, 3) | st.floats(0, 3, allow_nan=False),
        "seq": st.integers(0, 3),
        "vclock": clocks,
        "tags": st.lists(scalars, max_size=3),
        "items": st.lists(records, max_size=3),
        "status": st.sampled_from(STATUSES),
        "low": st.integers(-3, 3),
        "note": scalars,
        "stamps": st.dictionaries(st.sampled_from(["note", "status"]), stamps, max_size=2),
        "is_deleted": st.booleans(),
        "meta": st.fixed_dictionaries({}, optional={"x": scalars, "y": st.integers(0, 3)}),
    },
)


def bodies() -> st.SearchStrategy[dict[str, Any]]:
    """Bodies with the fields every strategy reads (built once: building it per draw is slow)."""
    return BODIES


@st.composite
def leaf_sets(draw: st.DrawFn, *, min_live: int = 2, deleted: bool = False) -> tuple[Leaf, ...]:
    """Leaves with unique revs (sometimes sharing a generation), some deleted when asked."""
    revs = draw(
        st.lists(
            st.tuples(st.integers(1, 4), st.sampled_from("0123456789abcdef")),
            min_size=min_live,
            max_size=5,
            unique=True,
        )
    )
    out = []
    for i, (gen, digit) in enumerate(revs):
        rev = f"{gen}-{digit * 8}"
        # every branch starts at 1-root, so the tombstone rule sees concurrent and earlier deletions
        parents = (*(f"{k}-{digit}{k}" for k in range(gen - 1, 1, -1)), "1-root") if gen > 1 else ()
        if deleted and i >= min_live and draw(st.booleans()):
            out.append(tombstone(rev, ours=draw(st.booleans()), parents=parents))
        else:
            out.append(leaf(rev, draw(bodies()), parents=parents))
    return tuple(out)
