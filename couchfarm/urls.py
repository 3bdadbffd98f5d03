"""Checks of a server URL from the settings, made at start so that a bad one fails in words.

Without them a URL that cannot be used surfaces later as a traceback from deep inside requests or
redis-py, and one of those (urllib's port parser) quotes a piece of the password when a raw ``#``
or ``/`` in it moved the end of the host. The messages here quote the URL only through
``redact_url``, which masks everything up to the last ``@``, so no part of a password is shown.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from couchfarm.redact import redact_url

_BLANK = re.compile(r"[\s\x00-\x1f\x7f]")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
ENCODING_HINT = "percent-encode them: @ as %40, : as %3A, / as %2F, ? as %3F, # as %23, % as %25"


def shown(url: str) -> str:
    """``url`` as it may appear in a message: redacted, and not at all when it cannot be parsed
    enough to find its password."""
    if "://" in url:
        return repr(redact_url(url))
    return "(the value, not shown: it may hold a password)" if "@" in url else repr(url)


def url_problem(url: str, schemes: tuple[str, ...], example: str) -> str | None:
    """Why ``url`` cannot serve as a server URL with one of ``schemes``, or None when it can."""
    scheme, sep, rest = url.partition("://")
    if _BLANK.search(url):
        return f"{shown(url)} contains a space or a control character: it is not a URL like {example}"
    if not sep or not scheme:
        return f"{shown(url)} is not a URL: it needs a scheme and a host, like {example}"
    if scheme.lower() not in schemes:
        return f"{shown(url)} has the scheme {scheme!r}: use {' or '.join(f'{s}://' for s in schemes)}"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if authority.count("@") > 1 or "@" in rest[len(authority) :]:
        return f"{shown(url)}: its user name or password holds a raw @, :, /, ? or #; {ENCODING_HINT}"
    if _BAD_PERCENT.search(authority.rpartition("@")[0]):
        return f"{shown(url)}: its user name or password holds a raw %; {ENCODING_HINT}"
    return _host_problem(url, scheme.lower(), authority.rpartition("@")[2])


def _host_problem(url: str, scheme: str, hostport: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address
        return f"{shown(url)} has a malformed host {hostport!r}"
    if not parts.hostname and scheme != "unix":
        return f"{shown(url)} names no host"
    try:
        parts.port  # noqa: B018 - parsing is the check
    except ValueError:
        port = hostport.rpartition("]")[2].partition(":")[2]
        return f"{shown(url)} has the port {port!r}: a port is a number from 1 to 65535"
    return None
