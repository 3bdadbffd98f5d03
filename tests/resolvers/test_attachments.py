"""Attachments follow the body the strategy chose (couchfarm/attachments.py, docs/resolution-rules.md)."""

from __future__ import annotations

from typing import Any

import pytest

from couchfarm.attachments import AttachmentChoiceError, sources
from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.plan import build_plan
from couchfarm.resolvers import build_resolver, parse_strategy
from couchfarm.settings import StrategySpec
from tests.resolvers.factory import leaf


def stub(digest: str, content_type: str = "text/plain") -> dict[str, Any]:
    return {"content_type": content_type, "revpos": 1, "digest": f"md5-{digest}", "length": 5, "stub": True}


OLD = leaf(
    "2-fff", {"t": 1}, attachments={"f.txt": stub("old"), "only-old.bin": stub("o")}
)  # CouchDB's winner
NEW = leaf("2-000", {"t": 2}, attachments={"f.txt": stub("new"), "g.bin": stub("g")})


def resolve(spec: str | StrategySpec, *leaves: Leaf, **kw: Any) -> Resolution:
    built = build_resolver(parse_strategy(spec) if isinstance(spec, str) else spec)
    return built.resolve(ConflictSet("db", "doc", leaves, **kw))


def picked(resolution: Resolution, *leaves: Leaf) -> dict[str, str]:
    return {name: source.rev for name, source in sources(tuple(leaves), resolution).items()}


def test_lww_takes_the_newer_leafs_copy_not_couchdbs_winners() -> None:
    result = resolve("lww:field=t", OLD, NEW)
    assert picked(result, OLD, NEW) == {"f.txt": "2-000", "g.bin": "2-000", "only-old.bin": "2-fff"}


def test_the_write_sends_the_parents_stub_as_read_and_other_copies_inline() -> None:
    conflict = ConflictSet("db", "doc", (OLD, NEW))
    plan = build_plan(conflict, resolve("lww:field=t", OLD, NEW), "lww")
    assert plan.winner_write is not None and plan.winner_write["_rev"] == "2-fff"  # a child of the winner
    written = plan.winner_write["_attachments"]
    assert list(written) == ["f.txt", "g.bin", "only-old.bin"]  # sorted: the same write on every replica
    assert written["only-old.bin"] == OLD.attachments["only-old.bin"]  # the parent's stub, exactly
    assert written["f.txt"] == {"content_type": "text/plain"} and written["g.bin"] == {
        "content_type": "text/plain"
    }
    assert sorted(plan.inline) == [("f.txt", "2-000"), ("g.bin", "2-000")]  # fetched, sent as data
    assert plan.attachments == {"f.txt": "2-000", "g.bin": "2-000", "only-old.bin": "2-fff"}


def test_winner_chosen_with_its_own_copies_writes_no_attachment_change() -> None:
    same = leaf("2-000", {"t": 0}, attachments={"f.txt": stub("old")})
    conflict = ConflictSet("db", "doc", (OLD, same))
    plan = build_plan(conflict, resolve("lww:field=t", OLD, same), "lww")
    assert plan.winner_write is None and plan.inline == []  # OLD already holds body and attachments


@pytest.mark.parametrize("spec", ["winner", "counter:field=t", "vclock"])
def test_every_choosing_strategy_names_its_leaf(spec: str) -> None:
    result = resolve(spec, OLD, NEW)
    expected = result.chosen[0]
    assert picked(result, OLD, NEW)["f.txt"] == expected


def test_vclock_drops_what_only_an_older_clock_had() -> None:
    older = leaf("2-fff", {"vclock": {"a": 1}}, attachments={"gone.txt": stub("x"), "f.txt": stub("old")})
    newer = leaf("2-000", {"vclock": {"a": 2}}, attachments={"f.txt": stub("new")})
    assert picked(resolve("vclock", older, newer), older, newer) == {"f.txt": "2-000"}


def fields(**options: Any) -> StrategySpec:
    return StrategySpec(strategy="fields", options=options)


def test_fields_lww_by_attachment_stamp_then_document_stamp() -> None:
    stamped = leaf("2-fff", {"t": 1, "ts": {"_attachments.f.txt": 9}}, attachments={"f.txt": stub("old")})
    result = resolve(fields(timestamp="t", field_timestamps="ts"), stamped, NEW)
    assert picked(result, stamped, NEW) == {"f.txt": "2-fff", "g.bin": "2-000"}
    keep = resolve(fields(timestamp="t", rules={"_attachments": "keep"}), OLD, NEW)
    assert picked(keep, OLD, NEW) == {
        "f.txt": "2-fff",
        "only-old.bin": "2-fff",
    }  # the winner's, g.bin dropped


def test_fields_three_way_keeps_a_deletion_and_an_untouched_copy() -> None:
    base = {"f.txt": stub("old"), "only-old.bin": stub("o")}
    edited = leaf("2-aaa", {"t": 1}, attachments={"f.txt": stub("old")})  # removed only-old.bin
    untouched = leaf("2-bbb", {"t": 0}, attachments=dict(base))
    result = resolve(fields(timestamp="t"), edited, untouched, base={"t": 0}, base_attachments=base)
    assert result.attachments == {"f.txt": "2-bbb", "only-old.bin": None}
    assert picked(result, edited, untouched) == {"f.txt": "2-bbb"}


def test_fields_without_a_rule_refuses_to_guess() -> None:
    result = resolve(fields(rules={"*": "max"}), OLD, NEW)
    assert result.body is None and "attachment 'f.txt' differs" in (result.unresolvable or "")
    with pytest.raises(Exception, match="_attachments takes lww or keep"):
        build_resolver(fields(timestamp="t", rules={"_attachments": "max"}))


def test_custom_follows_the_leaf_it_returned_or_what_it_says() -> None:
    spec = "custom:function=tests.resolvers.custom_examples:{}"
    returned = resolve(spec.format("first_body"), OLD, NEW)
    assert picked(returned, OLD, NEW)["f.txt"] == "2-fff"  # its body is OLD's
    told = resolve(spec.format("with_attachment_choice"), OLD, NEW)
    assert picked(told, OLD, NEW) == {"f.txt": "2-000", "only-old.bin": "2-fff"}  # g.bin dropped
    new_body = resolve(spec.format("new_body"), OLD, NEW)
    with pytest.raises(AttachmentChoiceError, match=r"attachment 'f\.txt' differs between leaves"):
        sources((OLD, NEW), new_body)


def test_a_choice_of_a_leaf_without_the_attachment_is_refused() -> None:
    bad = Resolution.merged({"t": 1}, ("2-fff",), attachments={"g.bin": "2-fff"})
    with pytest.raises(AttachmentChoiceError, match="not a live leaf holding it"):
        sources((OLD, NEW), bad)
