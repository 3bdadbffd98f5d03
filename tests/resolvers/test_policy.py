"""Deletion policies and ``is_conflict``."""

from __future__ import annotations

import dataclasses

import pytest

from couchfarm.errors import ConfigError
from couchfarm.models import Leaf, Resolution
from couchfarm.resolvers import build_resolver, is_conflict
from couchfarm.settings import StrategySpec
from tests.resolvers.factory import conflict, leaf, resolve, tombstone

ROOT = ("1-root",)
LIVE_A = leaf("2-aaa", {"v": "a", "t": 1}, parents=ROOT)
LIVE_B = leaf("2-bbb", {"v": "b", "t": 2}, parents=ROOT)


@pytest.mark.parametrize(
    ("leaves", "update_wins", "tombstone_wins"),
    [
        ((LIVE_A,), False, False),
        ((LIVE_A, LIVE_B), True, True),
        ((LIVE_A, tombstone("2-ddd", parents=ROOT)), False, True),  # concurrent delete-vs-edit
        ((LIVE_A, tombstone("3-ddd", parents=("2-ccc", *ROOT))), False, False),  # deleted an earlier edit
        ((LIVE_A, tombstone("2-ddd")), False, False),  # no history: the tree cannot tell, kept alive
        ((LIVE_A, tombstone("3-ddd", ours=True)), False, False),  # a leftover of our own resolution
        ((tombstone("3-ddd"), tombstone("3-eee")), False, False),
        ((LIVE_A, LIVE_B, tombstone("3-ddd", ours=True)), True, True),
        ((), False, False),
    ],
)
def test_is_conflict(leaves: tuple[Leaf, ...], update_wins: bool, tombstone_wins: bool) -> None:
    assert is_conflict(conflict(*leaves), "update_wins") is update_wins
    assert is_conflict(conflict(*leaves), "tombstone_wins") is tombstone_wins


def test_is_conflict_refuses_an_unknown_policy() -> None:
    with pytest.raises(ConfigError, match="deletion must be one of"):
        is_conflict(conflict(LIVE_A), "delete_wins")


def test_update_wins_ignores_deleted_leaves() -> None:
    # the tombstone is CouchDB's winner by generation only among deleted leaves; live ones decide
    assert resolve("winner", LIVE_A, LIVE_B, tombstone("9-fff")).body == {"v": "b", "t": 2}


def test_tombstone_wins_a_concurrent_user_deletion_beats_edits() -> None:
    assert (
        resolve("lww:field=t,deletion=tombstone_wins", LIVE_A, LIVE_B, tombstone("2-0", parents=ROOT))
        == Resolution.deletion()
    )


def test_tombstone_wins_the_edits_a_deletion_does_not_beat_are_merged() -> None:
    recreated = leaf("4-fff", {"v": "f", "t": 0}, parents=("3-tomb", "2-eee", *ROOT))
    conflict_set = conflict(LIVE_A, recreated, tombstone("2-0", parents=ROOT))
    resolver = build_resolver(StrategySpec(strategy="lww", options={"field": "t"}, deletion="tombstone_wins"))
    # 3-tomb's deletion state unknown: 4-fff is kept, 2-aaa (concurrent with the deletion) is beaten
    assert resolver.resolve(conflict_set).body == recreated.body
    # 3-tomb known to be live: both edits are beaten by the concurrent deletion
    known = dataclasses.replace(conflict_set, history={"3-tomb": False, "2-eee": False})
    assert resolver.resolve(known) == Resolution.deletion()


def test_tombstone_wins_ignores_couchfarm_tombstones() -> None:
    result = resolve("lww:field=t,deletion=tombstone_wins", LIVE_A, LIVE_B, tombstone("3-0", ours=True))
    assert result.body == {"v": "b", "t": 2}


def test_soft_delete_beats_edits_and_the_strategy_chooses_among_soft_deleted() -> None:
    soft_old = leaf("2-ccc", {"v": "c", "t": 0, "is_deleted": True})
    soft_new = leaf("2-000", {"v": "d", "t": 1, "is_deleted": 1})
    edit = leaf("2-fff", {"v": "e", "t": 9, "is_deleted": False})
    text = "lww:field=t,deletion=tombstone_wins,soft_delete_field=is_deleted"
    assert resolve(text, soft_old, soft_new, edit).body == {"v": "d", "t": 1, "is_deleted": 1}
    # under update_wins the soft-delete flag is an ordinary field
    assert resolve("lww:field=t,soft_delete_field=is_deleted", soft_old, soft_new, edit).body == edit.body


def test_only_deleted_leaves_stay_deleted() -> None:
    assert resolve("winner", tombstone("2-a"), tombstone("2-b")) == Resolution.deletion()


@pytest.mark.parametrize("field", ["_deleted", "", 3])
def test_soft_delete_field_must_be_a_plain_body_field(field: object) -> None:
    spec = StrategySpec(strategy="winner", options={"soft_delete_field": field}, deletion="tombstone_wins")
    with pytest.raises(ConfigError, match="strategy winner: option 'soft_delete_field'"):
        build_resolver(spec)


def test_fingerprint_covers_the_policy() -> None:
    prints = {
        build_resolver(StrategySpec(strategy="lww", options=options, deletion=deletion)).fingerprint
        for options in ({"field": "t"}, {"field": "t", "soft_delete_field": "gone"})
        for deletion in ("update_wins", "tombstone_wins")
    }
    assert len(prints) == 4
