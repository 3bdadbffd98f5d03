"""The tombstone rule on revision trees recorded from CouchDB 3.4.3 (docs/resolution-rules.md).

Leaves come from the recorded ``GET ?open_revs=all&revs=true`` answers where the recording has
one; the trees that follow a recorded write (a resurrection, a re-creation) are built from the
revision ids the recording shows.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers import build_resolver, is_conflict
from couchfarm.resolvers.deletions import Verdict, history_needed, undecided, verdict, verdicts
from couchfarm.settings import StrategySpec
from tests.resolvers.factory import leaf, tombstone

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "couchdb"
TOMBSTONE_WINS = StrategySpec(strategy="lww", options={"field": "v"}, deletion="tombstone_wins")


def recorded_leaves(name: str, index: int) -> tuple[Leaf, ...]:
    (path,) = FIXTURES.glob(f"{name}_*.json")
    rows = json.loads(path.read_text())["exchanges"][index]["response"]["body"]
    return tuple(Leaf.from_doc(row["ok"]) for row in rows)


def doc(*leaves: Leaf, history: dict[str, bool] | None = None) -> ConflictSet:
    return ConflictSet("db", "doc", leaves, history=history or {})


def test_a_conflict_resolved_by_hand_then_edited_is_not_deleted() -> None:
    # 12, doc m: 1-0 -> {2-a -> 3-cff (DELETE of the losing leaf), 2-b -> 3-083 (an ordinary edit)}
    leaves = recorded_leaves("12", 14)
    (deleted,) = (leaf for leaf in leaves if leaf.deleted)
    (live,) = (leaf for leaf in leaves if not leaf.deleted)
    assert verdict(deleted, live) is Verdict.EARLIER
    assert not is_conflict(doc(*leaves), "tombstone_wins")  # nothing to do: the document stays


def test_a_genuine_concurrent_delete_vs_edit_deletes() -> None:
    # 12, doc d: 1-111 -> {2-ccc (deleted), 2-eee (edit)}: both children of the branch point
    leaves = recorded_leaves("12", 18)
    assert set(verdicts(doc(*leaves)).values()) == {Verdict.COUNTS}
    assert is_conflict(doc(*leaves), "tombstone_wins")
    assert build_resolver(TOMBSTONE_WINS).resolve(doc(*leaves)) == Resolution.deletion()
    assert not is_conflict(doc(*leaves), "update_wins")


def test_the_01_tree_deletion_resolved_an_earlier_branch() -> None:
    # 01: 1-aaa -> {2-bbb, 2-ccc -> 3-ddd (deleted), 2-eee, 2-abc}: 3-ddd deleted the edit 2-ccc
    leaves = recorded_leaves("01", 11)
    conflict = doc(*leaves)
    assert set(verdicts(conflict).values()) == {Verdict.EARLIER}
    result = build_resolver(TOMBSTONE_WINS).resolve(conflict)
    assert result.body == {"v": 6} and result.chosen[0] == "2-abc"  # lww among the three live leaves


def test_a_resurrected_branch_beside_the_farms_old_tombstones_stays() -> None:
    # 01b: losers 2-bbb and 2-abc tombstoned (3-b47..., 3-7b9...), winner 3-745...; then a PUT on
    # the deleted leaf 3-ddd resurrected that branch as 4-f7b...
    root = ("1-aaa",)
    leaves = (
        leaf("4-f7b47882ae31670addddaba1ae60a15d", {"v": 7}, parents=("3-ddd", "2-ccc", *root)),
        leaf("3-74523c0640a17693015805f1caf61ea3", {"v": 99}, parents=("2-eee", *root)),
        tombstone("3-b4763800cd6d1e9fe5e757a512d19359", parents=("2-bbb", *root)),
        tombstone("3-7b9df18b81d238089ea853ac2a1ff843", parents=("2-abc", *root)),
    )
    assert set(verdicts(doc(*leaves)).values()) == {Verdict.EARLIER}
    assert history_needed(doc(*leaves)) == []


RECREATED = (
    # 12 doc d after the farm resolved it under tombstone_wins (tombstone 3-t on 2-eee), then a
    # user re-created the document: a PUT without _rev extends the deleted winner (09: 4-8ff...)
    leaf("4-rrr", {"v": 9}, parents=("3-t", "2-eee", "1-111")),
    tombstone("2-ccc", parents=("1-111",)),
)


@pytest.mark.parametrize(
    ("history", "expected", "deleted"),
    [
        ({"3-t": True, "2-eee": False}, Verdict.RECREATED, False),  # the tree says re-created
        ({}, Verdict.UNKNOWN, False),  # bodies compacted away: cannot tell, kept alive
        ({"3-t": False, "2-eee": False}, Verdict.COUNTS, True),  # two edits concurrent with the delete
    ],
)
def test_a_recreated_document(history: dict[str, bool], expected: Verdict, deleted: bool) -> None:
    conflict = doc(*RECREATED, history=history)
    assert history_needed(doc(*RECREATED)) == ["2-eee", "3-t"]
    assert verdict(RECREATED[1], RECREATED[0], history) is expected
    assert is_conflict(conflict, "tombstone_wins") is deleted
    assert undecided(conflict) == ([("2-ccc", "4-rrr")] if expected is Verdict.UNKNOWN else [])


def test_a_history_cut_short_by_revs_limit_cannot_tell() -> None:
    # 11: with _revs_limit=3 a leaf's _revisions keeps its last three ids only
    live = leaf("6-e00b", {"x": 6}, parents=("5-9dfc", "4-1ae4"))
    gone = tombstone("3-d3d3", parents=("2-c2c2", "1-b1b1"))
    assert verdict(gone, live) is Verdict.UNKNOWN
    assert not is_conflict(doc(live, gone), "tombstone_wins")
    assert undecided(doc(live, gone)) == [("3-d3d3", "6-e00b")]


def test_couchfarm_tombstones_never_count() -> None:
    live = leaf("2-eee", {"v": 1}, parents=("1-111",))
    ours = tombstone("2-ccc", ours=True, parents=("1-111",))
    assert verdicts(doc(live, ours)) == {}
    assert not is_conflict(doc(live, ours), "tombstone_wins")


def test_only_the_edits_a_deletion_beats_are_dropped() -> None:
    # one deletion concurrent with 2-aaa; 3-bbb descends from an earlier deletion (re-created)
    conflict = doc(
        leaf("2-aaa", {"v": 1}, parents=("1-0",)),
        leaf("3-bbb", {"v": 0}, parents=("2-x", "1-0")),
        tombstone("2-ddd", parents=("1-0",)),
        history={"2-x": True},
    )
    result = build_resolver(TOMBSTONE_WINS).resolve(conflict)
    assert result.body == {"v": 0}  # 3-bbb, although lww would prefer v=1
    gone = dataclasses.replace(conflict, history={"2-x": False})
    assert build_resolver(TOMBSTONE_WINS).resolve(gone) == Resolution.deletion()
