"""What every strategy shares: the two protocols, checked options, canonical output and fingerprints.

A *strategy* chooses among the candidate leaves it is given; the deletion policy
(:mod:`couchfarm.resolvers.policy`) decides which leaves are candidates and is the *resolver* the
engine calls. Keeping the two apart lets no strategy think about deletions at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from couchfarm.canonical import canonical, dumps
from couchfarm.errors import ConfigError
from couchfarm.models import ConflictSet, Leaf, Resolution, winner_key
from couchfarm.settings import StrategySpec


class Resolver(Protocol):
    """What the engine calls: one per configured strategy spec, pure and deterministic."""

    name: str  #: the strategy's name: ``lww``, ``fields`` ...
    fingerprint: str  #: 12 hex digits naming strategy, options, deletion policy and code version

    def resolve(self, conflict: ConflictSet) -> Resolution: ...


class Strategy(Protocol):
    """One strategy with its options checked; it chooses among ``leaves`` (never empty, all live)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> int:
        """Bumped whenever the same input could resolve differently, so provenance tells them apart."""

    @property
    def options(self) -> Mapping[str, Any]:
        """The options with defaults filled in: equivalent specs share one fingerprint."""

    def choose(self, conflict: ConflictSet, leaves: tuple[Leaf, ...]) -> Resolution: ...


class Options:
    """The options of one strategy, checked as the strategy reads them.

    The registry calls :meth:`done` afterwards, so an option no strategy read (a typo) fails the
    build instead of being ignored silently. ``nested`` builds an inner strategy (``vclock``'s
    fallback) without the strategy modules importing the registry.
    """

    def __init__(
        self, strategy: str, raw: Mapping[str, Any], nested: Callable[[StrategySpec], Strategy]
    ) -> None:
        self.strategy = strategy
        self.nested = nested
        self._raw = dict(raw)
        self._seen: set[str] = set()

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"strategy {self.strategy}: option {key!r} {problem}", field=f"options.{key}")

    def get(self, key: str, default: Any = None) -> Any:
        self._seen.add(key)
        return self._raw.get(key, default)

    def text(self, key: str, default: str | None = None) -> str | None:
        """An optional non-empty string option."""
        value = self.get(key, default)
        if value is not None and (not isinstance(value, str) or not value):
            raise self.error(key, f"must be a non-empty string, not {value!r}")
        return value

    def required_text(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise self.error(key, "is required")
        return value

    def field(self, key: str, default: str | None = None) -> str | None:
        """An optional option naming a body field."""
        value = self.text(key, default)
        return None if value is None else self._body_field(key, value)

    def required_field(self, key: str) -> str:
        return self._body_field(key, self.required_text(key))

    def _body_field(self, key: str, value: str) -> str:
        """``_`` members are CouchDB's and never reach a body: such a name could only read nothing."""
        if value.startswith("_"):
            raise self.error(key, f"names a body field, which never starts with '_': {value!r}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self._raw) - self._seen)
        if unknown:
            known = ", ".join(sorted(self._seen)) or "none"
            raise self.error(unknown[0], f"is unknown (known options: {known})")


def merged(
    body: Mapping[str, Any],
    chosen: tuple[Leaf, ...] = (),
    attachments: Mapping[str, str | None] | None = None,
) -> Resolution:
    """A merged resolution with the body canonical and without ``_`` members (CouchDB metadata);
    ``chosen``: the leaves whose body it is, most preferred first (their attachments follow it)."""
    return Resolution.merged(
        {k: canonical(v) for k, v in sorted(body.items()) if not k.startswith("_")},
        tuple(leaf.rev for leaf in chosen),
        attachments,
    )


def preferred(leaves: tuple[Leaf, ...], key: Callable[[Leaf], Any]) -> tuple[Leaf, ...]:
    """``leaves`` best first by ``key`` (which must end in :func:`rank`, so the order is total)."""
    return tuple(sorted(leaves, key=key, reverse=True))


def rank(leaf: Leaf) -> tuple[bool, int, str]:
    """CouchDB's winner order: the last tie-break of every strategy, total because revs are unique."""
    return winner_key(leaf.rev, leaf.deleted)


def current_winner(leaves: tuple[Leaf, ...]) -> Leaf:
    """The leaf CouchDB would show among ``leaves``."""
    return max(leaves, key=rank)


def fingerprint(parts: Mapping[str, Any]) -> str:
    """Twelve hex digits of SHA-256 over the canonical JSON of ``parts``."""
    return hashlib.sha256(dumps(parts).encode()).hexdigest()[:12]
