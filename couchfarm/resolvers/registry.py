"""Strategy names to builders, and :func:`build_resolver`, which checks a spec completely.

Everything a configuration can get wrong fails here, at start, with a ``ConfigError`` naming the
strategy and the option; a resolver that was built never fails on configuration later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from couchfarm.errors import ConfigError
from couchfarm.resolvers import counter, custom, fields, lww, vclock, winner
from couchfarm.resolvers.base import Options, Resolver, Strategy
from couchfarm.resolvers.policy import PolicyResolver
from couchfarm.settings import StrategySpec

STRATEGIES: dict[str, Callable[[Options], Strategy]] = {
    "winner": winner.build,
    "lww": lww.build,
    "counter": counter.build,
    "vclock": vclock.build,
    "fields": fields.build,
    "custom": custom.build,
}
SOFT_DELETE = "soft_delete_field"  #: read by the deletion policy, accepted by every strategy


def build_resolver(spec: StrategySpec) -> Resolver:
    """A resolver for ``spec``: its strategy behind its deletion policy."""
    soft = _soft_delete_field(spec)
    options = {k: v for k, v in spec.options.items() if k != SOFT_DELETE}
    return PolicyResolver(build_strategy(spec.strategy, options), spec.deletion, soft)


def build_strategy(name: str, options: Mapping[str, Any]) -> Strategy:
    """A bare strategy, without a deletion policy (also used for nested fallbacks)."""
    factory = STRATEGIES.get(name)
    if factory is None:
        known = ", ".join(sorted(STRATEGIES))
        raise ConfigError(f"unknown strategy {name!r} (known: {known})", field="strategy")
    opts = Options(name, options, nested=_nested)
    strategy = factory(opts)
    opts.done()
    return strategy


def _nested(spec: StrategySpec) -> Strategy:
    return build_strategy(spec.strategy, spec.options)


def _soft_delete_field(spec: StrategySpec) -> str | None:
    value = spec.options.get(SOFT_DELETE)
    if value is None:
        return None
    if not isinstance(value, str) or not value or value.startswith("_"):
        raise ConfigError(
            f"strategy {spec.strategy}: option {SOFT_DELETE!r} must be a body field name not starting "
            f"with '_' (CouchDB's own _deleted is the deletion policy's business), not {value!r}",
            field=f"options.{SOFT_DELETE}",
        )
    return value
