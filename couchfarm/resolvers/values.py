"""Reading and ordering JSON values the same way on every worker.

Timestamps and counters become exact :class:`~fractions.Fraction` values so that a float, an int and
an ISO-8601 string are compared without rounding, and :func:`canon_key` gives every JSON value a
place in one total order so that "the largest" never depends on which leaf came first.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from couchfarm.canonical import dumps

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def number(value: Any) -> Fraction | None:
    """A finite JSON number, exactly; booleans are not numbers here (``True == 1`` in Python)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return Fraction(value)


def instant(value: Any) -> Fraction | None:
    """Seconds since the epoch for a number or an ISO-8601 string (``Z`` or an offset; no offset
    means UTC); None when unparseable, so that such a leaf loses instead of failing the document."""
    if not isinstance(value, str):
        return number(value)
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return Fraction((moment - _EPOCH) // _MICROSECOND, 1_000_000)
    except (ValueError, OverflowError):
        return None


def canon_key(value: Any) -> tuple[int, Any, str, str]:
    """A total order over JSON values: null < booleans < numbers < strings < arrays and objects
    (by canonical text); equal numbers of different spelling (``1``, ``1.0``) by their text."""
    text = dumps(value)
    if value is None:
        return (0, 0, "", text)
    if isinstance(value, bool):
        return (1, int(value), "", text)
    if isinstance(value, int | float):
        return (2, value, "", text)
    if isinstance(value, str):
        return (3, 0, value, text)
    return (4, 0, text, text)
