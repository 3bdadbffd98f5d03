"""``winner``, ``lww`` and ``counter``."""

from __future__ import annotations

import pytest

from tests.resolvers.factory import body_of, leaf


def test_winner_is_couchdbs_winner_higher_generation_then_hash() -> None:
    a, b, c = leaf("2-aaa", {"v": "a"}), leaf("3-000", {"v": "b"}), leaf("3-fff", {"v": "c"})
    assert body_of("winner", a, b, c) == {"v": "c"}
    assert body_of("winner", a, b) == {"v": "b"}


def test_winner_output_has_sorted_keys_and_is_a_copy() -> None:
    nested = {"z": 1, "a": [{"y": 1, "b": 2}]}
    original = leaf("2-b", {"z": nested, "a": 1})
    body = body_of("winner", leaf("2-a", {"v": 1}), original)
    assert (
        list(body) == ["a", "z"] and list(body["z"]) == ["a", "z"] and list(body["z"]["a"][0]) == ["b", "y"]
    )
    body["z"]["a"].append(3)
    assert original.body["z"]["a"] == [{"y": 1, "b": 2}]


@pytest.mark.parametrize(
    ("a", "b", "wins"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T09:00:00Z", "a"),
        ("2024-05-01T10:00:00+02:00", "2024-05-01T09:00:00Z", "b"),  # 08:00Z is earlier
        ("2024-05-01T10:00:00.5Z", "2024-05-01T10:00:00.4999Z", "a"),
        ("2024-05-01T10:00:00", "2024-05-01T10:00:01Z", "b"),  # no offset is UTC
        (1714557600.5, "2024-05-01T10:00:00Z", "a"),  # numbers are epoch seconds
        ("garbage", "2000-01-01T00:00:00Z", "b"),  # unparseable loses to any timestamp
        (None, "2000-01-01T00:00:00Z", "b"),
        (True, 0, "b"),  # a boolean is not a timestamp
    ],
)
def test_lww_compares_instants(a: object, b: object, wins: str) -> None:
    left, right = leaf("2-aaa", {"t": a, "who": "a"}), leaf("2-bbb", {"t": b, "who": "b"})
    assert body_of("lww:field=t", left, right)["who"] == wins


def test_lww_missing_field_loses_even_to_the_lower_rev() -> None:
    assert (
        body_of("lww:field=t", leaf("9-fff", {"who": "x"}), leaf("1-aaa", {"t": 0, "who": "y"}))["who"] == "y"
    )


def test_lww_tie_counter_then_rev_order() -> None:
    t = "2024-05-01T10:00:00Z"
    same_instant = "2024-05-01T12:00:00+02:00"
    a = leaf("2-fff", {"t": t, "c": 1, "who": "a"})
    b = leaf("2-aaa", {"t": same_instant, "c": 2, "who": "b"})
    assert body_of("lww:field=t,tie=c", a, b)["who"] == "b"
    assert body_of("lww:field=t", a, b)["who"] == "a"  # no tie field: CouchDB order, 2-fff
    no_counter = leaf("2-000", {"t": t, "who": "c"})
    assert body_of("lww:field=t,tie=c", no_counter, leaf("1-0", {"t": t, "c": 0, "who": "d"}))["who"] == "d"


def test_counter_highest_wins_ties_by_rev() -> None:
    a, b = leaf("2-aaa", {"seq": 7, "who": "a"}), leaf("3-bbb", {"seq": 5, "who": "b"})
    assert body_of("counter:field=seq", a, b)["who"] == "a"
    c = leaf("2-ccc", {"seq": 7, "who": "c"})
    assert body_of("counter:field=seq", a, b, c)["who"] == "c"
    assert body_of("counter:field=seq", leaf("9-f", {"seq": "9"}), leaf("1-a", {"seq": 0.5}))["seq"] == 0.5


def test_merged_bodies_never_carry_underscore_members() -> None:
    # bodies never hold them when read by the client; a strategy still must not pass them on
    body = body_of("winner", leaf("2-a", {"_id": "x", "v": 1}), leaf("1-a", {}))
    assert body == {"v": 1}
