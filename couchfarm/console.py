"""Text from documents made safe to print on a terminal or in a console log line.

Document ids, field names and server reasons come from whoever writes to the database. Printed raw,
a newline in one forges a log line or a table row, and an ANSI escape (``\\x1b[2J``) or a bidi
override (U+202E) rewrites what the operator sees. ``printable`` writes every character Python does
not count as printable as an escape (``\\n``, ``\\x1b``, ``\\u202e``); letters of any script stay as
they are. JSON output and JSON logs need none of this: JSON escapes control characters itself.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object, keep: str = "") -> str:
    """``str(text)`` with every non-printable character escaped, except those in ``keep`` (a
    multi-line message keeps its ``"\n"``); the same text when there is nothing to escape."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() or ch in keep else _escape(ch) for ch in value)


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
