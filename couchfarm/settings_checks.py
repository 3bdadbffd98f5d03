"""Where each setting came from, and the settings that contradict each other.

Each value is valid on its own when these run (pydantic checked it); what is checked here is how
values fit together, so the message names every field involved and the source of each: the command
line, an environment variable, ``file:line`` or the default.

The rules, and why:

- ``retry_backoff <= retry_backoff_max`` and ``couch_backoff <= couch_backoff_max``: the first wait
  cannot be above the cap meant to bound every wait; one of the two is a typo.
- ``feed_readers < couch_pool_size``: the feed readers share the HTTP pool with the change signal,
  the mirror writes and the lease checks; more readers than connections would queue on the pool.
- ``batch_max_size >= batch_size``: batches grow from one to the other as a backlog deepens.
- ``lease_ttl >= 2 * feed_deadline + 1``: a follower blocked in a feed read cannot see that its lease
  is gone; the read ends at its client-side deadline, ``1.5 * feed_deadline + 0.5`` s
  (``couchfarm/dispatch/follower.py``). The rule keeps the longest read shorter than a lease with a margin of
  half a ``feed_deadline`` and half a second, so a follower that lost its lease (a Redis blip, a
  pause, a rebalance) learns it at its next fenced write within one lease period, and a former holder
  and a new one overlap by at most one read. The defaults (30 and 10) pass with room.
- a ``sentinel://`` Redis URL needs ``redis_sentinel_master``: the sentinels are asked for a master
  by its name.
- database rules: the first rule whose name or glob matches a database wins, so a second rule with
  the same name, or a plain name after a glob that matches it, would never apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING, Any

from couchfarm.names import is_glob

if TYPE_CHECKING:
    from couchfarm.settings import Settings

ENV_PREFIX = "COUCHFARM_"
Loc = tuple[Any, ...]


class Origins:
    """Where a value at a location (``("databases", 0, "name")``) came from, in words."""

    def __init__(
        self,
        config: str | Path | None,
        lines: Mapping[Loc, int],
        env: Mapping[str, str],
        overrides: Mapping[str, Any],
    ) -> None:
        self.config, self.lines, self.env, self.overrides = config, lines, env, overrides

    def of(self, loc: Loc) -> str:
        """The command line, ``environment variable X``, ``file:line`` or ``defaults``."""
        var = f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else ""
        if loc and self.overrides.get(str(loc[0])) is not None:
            return "command line"
        if var in self.env:
            return f"environment variable {var}"
        if self.config is not None:
            line = next((self.lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in self.lines), None)
            return f"{self.config}:{line}" if line else str(self.config)
        return "defaults"

    def of_field(self, name: str) -> str:
        """Like ``of`` for a top-level field, but ``default`` when nothing set it."""
        given = (name,) in self.lines or f"{ENV_PREFIX}{name.upper()}" in self.env
        return self.of((name,)) if given or self.overrides.get(name) is not None else "default"


def contradictions(settings: Settings, origins: Origins) -> list[tuple[str, str]]:
    """``(field, message)`` for every rule of the module docstring the settings break."""
    found = []
    for base, cap in (("retry_backoff", "retry_backoff_max"), ("couch_backoff", "couch_backoff_max")):
        low, high = getattr(settings, base), getattr(settings, cap)
        if low > high:
            found.append(
                (
                    base,
                    f"{base} {low:g} s ({_from(origins, base)}) is larger than {cap} {high:g} s "
                    f"({_from(origins, cap)}): the first wait would exceed the cap on every wait",
                )
            )
    if settings.batch_max_size < settings.batch_size:
        found.append(
            (
                "batch_max_size",
                f"batch_max_size {settings.batch_max_size} ({_from(origins, 'batch_max_size')}) is smaller "
                f"than batch_size {settings.batch_size} ({_from(origins, 'batch_size')}): a backlog would "
                "be cut into smaller batches than a trickle",
            )
        )
    if settings.feed_readers >= settings.couch_pool_size:
        found.append(
            (
                "feed_readers",
                f"feed_readers {settings.feed_readers} ({_from(origins, 'feed_readers')}) must stay below "
                f"couch_pool_size {settings.couch_pool_size} ({_from(origins, 'couch_pool_size')}): the "
                "readers share the dispatcher's HTTP pool with the change signal and every other request",
            )
        )
    need = 2 * settings.feed_deadline + 1
    if settings.lease_ttl < need:
        found.append(
            (
                "lease_ttl",
                f"lease_ttl {settings.lease_ttl:g} s ({_from(origins, 'lease_ttl')}) must be at least "
                f"2 x feed_deadline + 1 s = {need:g} s (feed_deadline {settings.feed_deadline:g} s, "
                f"{_from(origins, 'feed_deadline')}): a follower waiting on a feed read (up to 1.5 x "
                "feed_deadline + 0.5 s) cannot see its lease expire, so the lease must outlast that read",
            )
        )
    for name in ("redis_url", "broker_url", "result_url"):
        url = getattr(settings, name) or ""
        if url.lower().startswith("sentinel://") and not settings.redis_sentinel_master:
            found.append(
                (
                    "redis_sentinel_master",
                    f"{name} ({_from(origins, name)}) names sentinels, so redis_sentinel_master "
                    "(COUCHFARM_REDIS_SENTINEL_MASTER) must name the master they watch",
                )
            )
            break
    return found + _rule_clashes([r.name for r in settings.databases], origins)


def _from(origins: Origins, name: str) -> str:
    source = origins.of_field(name)
    return "the default" if source == "default" else f"from {source}"


def _rule_clashes(names: list[str], origins: Origins) -> list[tuple[str, str]]:
    """A rule that can never apply: the same name as an earlier rule, or a plain name that an
    earlier glob already matches (the first matching rule wins)."""
    found = []
    for i, name in enumerate(names):
        earlier = next(
            (j for j in range(i) if names[j] == name or (not is_glob(name) and fnmatchcase(name, names[j]))),
            None,
        )
        if earlier is None:
            continue
        here = f"databases[{i}] {name!r} (from {origins.of(('databases', i, 'name'))})"
        first = f"databases[{earlier}] {names[earlier]!r} (from {origins.of(('databases', earlier, 'name'))})"
        why = "repeats" if names[earlier] == name else "is matched first by"
        found.append(
            (
                f"databases.{i}.name",
                f"{here} {why} {first}: the first matching rule wins, so this one would never apply; "
                "merge them, or put the more specific rule first",
            )
        )
    return found
