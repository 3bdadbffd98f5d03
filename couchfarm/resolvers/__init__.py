"""Pure, deterministic conflict resolution strategies: no I/O, no clock, no randomness.

The engine builds one resolver per configured :class:`~couchfarm.settings.StrategySpec` (through a
:class:`Router`) and calls ``resolver.resolve(conflict)``. Modules:

- ``winner``, ``lww``, ``counter``, ``vclock``, ``fields``, ``custom``: one strategy each;
- ``lattice`` and ``values``: the merges and orders the strategies share;
- ``policy``: the deletion policies wrapped around every strategy, and :func:`is_conflict`;
- ``registry``, ``spec``, ``router``: building, parsing and choosing specs.
"""

from couchfarm.resolvers.base import Resolver
from couchfarm.resolvers.lattice import MISSING, MergeError, merge_values
from couchfarm.resolvers.policy import is_conflict
from couchfarm.resolvers.registry import STRATEGIES, build_resolver
from couchfarm.resolvers.router import Router
from couchfarm.resolvers.spec import parse_strategy
from couchfarm.resolvers.vclock import merge_clocks

__all__ = [
    "MISSING",
    "STRATEGIES",
    "MergeError",
    "Resolver",
    "Router",
    "build_resolver",
    "is_conflict",
    "merge_clocks",
    "merge_values",
    "parse_strategy",
]
