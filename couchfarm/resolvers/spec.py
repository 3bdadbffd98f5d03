"""The one-line strategy form used on the command line: ``name[:key=value,key=value...]``.

Examples: ``winner``, ``lww:field=updated_at,tie=counter``, ``custom:function=mymod:merge``,
``fields:timestamp=updated_at,deletion=tombstone_wins``. Only the first ``:`` separates the name, so
values may contain colons; ``,`` separates options, so a nested spec given as a value (``vclock``'s
``fallback``) can carry one option at most here — use the YAML form for more. ``deletion`` sets the
deletion policy instead of an option. Values are YAML 1.2 scalars: ``3``, ``2.5``, ``true`` and
``null`` become numbers, booleans and None; everything else (dates, ``yes``, ``0x1f``) stays a string.
"""

from __future__ import annotations

import math
import re
from typing import Any, cast

from couchfarm.errors import ConfigError
from couchfarm.settings import Deletion, StrategySpec

DELETIONS = ("update_wins", "tombstone_wins")
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None, "~": None}


def parse_strategy(text: str) -> StrategySpec:
    """A spec from its one-line form; ``ConfigError`` naming the part that is wrong."""
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise _error(text, f"the strategy name {name!r} is not a lowercase word")
    options: dict[str, Any] = {}
    deletion: Deletion = "update_wins"
    seen: set[str] = set()
    for part in rest.split(",") if rest.strip() else []:
        key, eq, raw = (s.strip() for s in part.partition("="))
        if not eq or not key:
            raise _error(text, f"{part.strip()!r} is not key=value")
        if not raw:
            raise _error(text, f"option {key!r} has no value")
        if key in seen:
            raise _error(text, f"option {key!r} is given twice")
        seen.add(key)
        if key == "deletion":
            if raw not in DELETIONS:
                raise _error(text, f"deletion must be one of {', '.join(DELETIONS)}, not {raw!r}")
            deletion = cast(Deletion, raw)
        else:
            options[key] = scalar(raw)
    return StrategySpec(strategy=name, options=options, deletion=deletion)


def scalar(raw: str) -> Any:
    """A number, boolean or null as the YAML 1.2 core schema reads them; the text itself otherwise.

    Not PyYAML's YAML 1.1 rules, under which ``on``/``no`` are booleans, ``010`` is octal and ``1:30``
    is ninety: field names and values on a command line must stay what they look like.
    """
    lowered = raw.lower()
    if lowered in _CONSTANTS:
        return _CONSTANTS[lowered]
    for kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            continue
        return value if math.isfinite(value) else raw
    return raw


def _error(text: str, problem: str) -> ConfigError:
    return ConfigError(f"strategy {text.strip()!r}: {problem}", field="strategy", source=text)
