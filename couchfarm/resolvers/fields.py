"""``fields``: merge a document field by field, each field by its own rule.

Options: ``rules`` maps a field to a rule (``"*"``, default ``lww``, covers the rest); ``timestamp``
names the document's timestamp field; ``field_timestamps`` names a ``{field: timestamp}`` object in
the body. Rules (see :mod:`couchfarm.resolvers.lattice`):

- ``lww``: the value of the leaf with the latest timestamp for that field (its entry in
  ``field_timestamps``, else the document ``timestamp``; none loses), ties by CouchDB winner order;
- ``max``, ``min``, ``union``, ``append`` (``{"append": {"key": "id"}}``): lattice joins;
- ``priority`` (``{"priority": [cancelled, shipped, paid, new]}``): the earliest listed value wins,
  unknown values lose (to each other by winner order), a missing field loses to everything;
- ``keep``: the current winner's value (missing included); ``drop``: the field is removed.

Without a base, a field missing from some leaves is ignored by every rule but ``keep``: nothing says
whether it was deleted or never set, and dropping data is the worse mistake. With a base (the last
common ancestor), each field is merged three-way: leaves whose value equals the base's did not touch
it; one distinct new value (a deletion included) is taken as is; none keeps the base value; several
go to the rule, where ``lww`` and ``priority`` see a deletion as a value and lattice rules skip it.
``keep`` and ``drop`` ignore the base.

A rule key ``a.b`` reaches into objects: ``a`` is then merged member by member (three-way on ``a``
first), and every leaf's ``a`` must be an object. The ``field_timestamps`` object, unless it has
a rule, keeps the latest timestamp of every field, so the merge carries the stamps of what it chose.

Attachments are merged by name with the rule ``_attachments`` (``lww``, the default whenever a
timestamp option is set, or ``keep``), three-way against the base's attachments like a field: a
copy is its digest and content type, a leaf without the name has deleted it (with a base) or never
had it (without). ``lww`` takes the copy of the leaf with the latest stamp for
``_attachments.<name>`` (its ``field_timestamps`` entry, else the document timestamp); ``keep``
the current winner's. Without a rule, leaves that disagree on an attachment make the merge fail
with a reason, rather than keep some copy silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from couchfarm.canonical import dumps
from couchfarm.models import ConflictSet, Leaf, Resolution
from couchfarm.resolvers.base import Options, current_winner, merged, rank
from couchfarm.resolvers.lattice import LATTICE, MISSING, MergeError, Rule, merge_values, parse_rule
from couchfarm.resolvers.values import instant

VERSION = 1
DEFAULT = "*"
ATTACHMENTS = "_attachments"  #: the rule key for attachments, merged by name
ATTACHMENT_RULES = ("lww", "keep")
_NESTED = Rule("nested")
Pairs = list[tuple[Leaf, Any]]


@dataclass(frozen=True)
class FieldMerge:
    rules: Mapping[str, Rule]
    timestamp: str | None = None
    field_timestamps: str | None = None

    name: ClassVar[str] = "fields"
    version: ClassVar[int] = VERSION

    @property
    def options(self) -> dict[str, Any]:
        rules = {path: self.rules[path].describe() for path in sorted(self.rules)}
        return {"timestamp": self.timestamp, "field_timestamps": self.field_timestamps, "rules": rules}

    def choose(self, conflict: ConflictSet, leaves: tuple[Leaf, ...]) -> Resolution:
        winner = current_winner(leaves).rev
        try:
            body = self._object("", [(leaf, leaf.body) for leaf in leaves], conflict.base, winner)
            attachments = self._attachments(conflict, leaves, winner)
        except MergeError as exc:
            return Resolution.fail(f"fields: {exc}")
        return merged(body, attachments=attachments)

    def _attachments(
        self, conflict: ConflictSet, leaves: tuple[Leaf, ...], winner: str
    ) -> dict[str, str | None]:
        """Per attachment name, the rev whose copy the merge keeps (None: dropped)."""
        base = conflict.base_attachments if conflict.base is not None else None
        rule = self.rules.get(ATTACHMENTS)
        if rule is None and (self.timestamp or self.field_timestamps):
            rule = Rule("lww")
        out: dict[str, str | None] = {}
        for name in sorted({name for leaf in leaves for name in leaf.attachments} | set(base or ())):
            values: Pairs = [(leaf, _copy(leaf.attachments.get(name, MISSING))) for leaf in leaves]
            if rule is not None and rule.kind == "keep":
                values = [(leaf, value) for leaf, value in values if leaf.rev == winner]
            elif base is not None:  # leaves holding the base's copy did not touch it
                old = _copy(base.get(name, MISSING))
                values = [pair for pair in values if pair[1] != old] or values
            else:  # nothing says whether a leaf without it deleted it or never had it
                values = [pair for pair in values if pair[1] is not MISSING]
            if len({value for _, value in values}) > 1:
                if rule is None:
                    revs = ", ".join(leaf.rev for leaf, _ in values)
                    raise MergeError(
                        f"attachment {name!r} differs between leaves {revs}: "
                        "give an _attachments rule (lww or keep)"
                    )
                path = f"{ATTACHMENTS}.{name}"
                values = [max(values, key=lambda pair: (*self._stamp(pair[0], path), rank(pair[0])))]
            leaf, value = max(values, key=lambda pair: rank(pair[0]))
            out[name] = None if value is MISSING else leaf.rev
        return out

    def rule_for(self, path: str) -> Rule:
        if path in self.rules:
            return self.rules[path]
        if any(key.startswith(path + ".") for key in self.rules):
            return _NESTED
        if path == self.field_timestamps:
            return Rule("stamps")
        return self.rules[DEFAULT]

    def _object(
        self, prefix: str, pairs: Pairs, base: Mapping[str, Any] | None, winner: str
    ) -> dict[str, Any]:
        names = sorted({name for _, obj in pairs for name in obj} | set(base or ()))
        out: dict[str, Any] = {}
        for name in names:
            values = [(leaf, obj.get(name, MISSING)) for leaf, obj in pairs]
            old = base.get(name, MISSING) if base is not None else MISSING
            value = self._field(prefix + name, values, base is not None, old, winner)
            if value is not MISSING:
                out[name] = value
        return out

    def _field(self, path: str, values: Pairs, three_way: bool, old: Any, winner: str) -> Any:
        rule = self.rule_for(path)
        if rule.kind == "drop":
            return MISSING
        if rule.kind == "keep":
            # the winner is left out of a nested merge only where its parent object is missing or
            # unchanged from the base; either way its value here is ``old``
            return next((value for leaf, value in values if leaf.rev == winner), old)
        if three_way:
            values = [(leaf, value) for leaf, value in values if _ident(value) != _ident(old)]
            if len({_ident(value) for _, value in values}) <= 1:
                return values[0][1] if values else old
        else:
            values = [(leaf, value) for leaf, value in values if value is not MISSING]
        if rule is _NESTED:
            return self._nested(path, values, old, three_way, winner)
        try:
            return self._apply(path, rule, values)
        except MergeError as exc:
            raise MergeError(f"field {path!r}: {exc}") from None

    def _nested(self, path: str, values: Pairs, old: Any, three_way: bool, winner: str) -> dict[str, Any]:
        """Merge member by member; a leaf without the object counts as an empty one."""
        pairs: Pairs = []
        for leaf, value in values:
            if value is not MISSING and not isinstance(value, dict):
                raise MergeError(f"field {path!r} must be an object in every leaf, got {value!r}")
            pairs.append((leaf, {} if value is MISSING else value))
        base = (old if isinstance(old, dict) else {}) if three_way else None
        return self._object(path + ".", pairs, base, winner)

    def _apply(self, path: str, rule: Rule, values: Pairs) -> Any:
        if not values:
            return MISSING
        if rule.kind in LATTICE:
            return merge_values(rule, [value for _, value in values])
        if rule.kind == "priority":
            return max(values, key=lambda pair: _priority_key(rule, pair))[1]
        return max(values, key=lambda pair: (*self._stamp(pair[0], path), rank(pair[0])))[1]

    def _stamp(self, leaf: Leaf, path: str) -> tuple[bool, Fraction]:
        """The time ``leaf`` last wrote ``path``: its per-field stamp, else the document's."""
        moment = None
        stamps = leaf.body.get(self.field_timestamps) if self.field_timestamps else None
        if isinstance(stamps, dict) and path in stamps:
            moment = instant(stamps[path])
        if moment is None and self.timestamp:
            moment = instant(leaf.body.get(self.timestamp))
        return (moment is not None, moment or Fraction(0))


def _copy(stub: Any) -> Any:
    """An attachment copy as a comparable value: its digest and content type."""
    return MISSING if stub is MISSING else dumps([stub.get("digest"), stub.get("content_type")])


def _ident(value: Any) -> str:
    return "\0missing" if value is MISSING else dumps(value)


def _priority_key(rule: Rule, pair: tuple[Leaf, Any]) -> tuple[int, Any]:
    leaf, value = pair
    place = len(rule.order) + 1
    if value is not MISSING:
        text = dumps(value)
        place = next((i for i, best in enumerate(rule.order) if dumps(best) == text), len(rule.order))
    return (-place, rank(leaf))


def build(opts: Options) -> FieldMerge:
    """Options: ``rules`` (mapping), ``timestamp``, ``field_timestamps``; an ``lww`` rule (the default
    one included) needs one of the two timestamp options."""
    timestamp, field_timestamps = opts.field("timestamp"), opts.field("field_timestamps")
    rules = _rules(opts, opts.get("rules", {}))
    if any(r.kind == "lww" for r in rules.values()) and not (timestamp or field_timestamps):
        raise opts.error("timestamp", "is required by the lww rule (or give field_timestamps)")
    return FieldMerge(rules=rules, timestamp=timestamp, field_timestamps=field_timestamps)


def _rules(opts: Options, raw: Any) -> dict[str, Rule]:
    if not isinstance(raw, Mapping):
        raise opts.error("rules", f"must map field names to rules, not {raw!r}")
    rules: dict[str, Rule] = {}
    for path, value in raw.items():
        if path == ATTACHMENTS:
            if value not in ATTACHMENT_RULES:
                raise opts.error("rules", f"_attachments takes lww or keep, not {value!r}")
            rules[path] = Rule(value)
            continue
        if not isinstance(path, str) or not path or path.startswith("_"):
            raise opts.error("rules", f"has a bad field name {path!r} (a string not starting with '_')")
        try:
            rules[path] = parse_rule(value)
        except ValueError as exc:
            raise opts.error("rules", f"field {path!r}: {exc}") from None
    rules.setdefault(DEFAULT, Rule("lww"))
    for path in rules:
        inner = next((other for other in rules if other.startswith(path + ".")), None)
        if inner and path != DEFAULT:
            raise opts.error("rules", f"{path!r} and {inner!r} overlap: give rules for the members only")
    return rules
