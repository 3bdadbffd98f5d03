"""Keep credentials out of logs, errors, reprs, task arguments and dead letters.

Two mechanisms, used together:
- ``redact_url`` masks the password in a URL's userinfo (``http://u:***@host``);
- a process-wide registry of secret strings (passwords, tokens, Authorization header values) that
  ``redact`` replaces wherever they appear, and that ``RedactingFilter`` applies to every log record.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
# The password runs to the *last* ``@`` of the token: a raw ``@ / # : %`` in it must not end the match
# early and leave a piece of it behind (quotes and brackets end a token in JSON and logs).
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s\"'<>]*):(?P<pw>[^\s\"'<>]*)@")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer)\s+[A-Za-z0-9+/=._~-]+")
_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so that ``redact`` and the log filter mask it from now on."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def redact_url(url: str) -> str:
    """The URL with any userinfo password replaced by ``***`` (the user name stays).

    Never raises and never leaves a piece of the password, even when the password holds a raw
    ``@ : / # %`` that makes the URL ambiguous: the userinfo is taken to end at the last ``@``
    (a host cannot contain one), so an ambiguous URL is masked too much rather than too little.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if not sep or at < 0:
        return url
    user, colon, password = rest[:at].partition(":")
    if not colon:
        return url  # a user name without a password
    register_secret(password)
    register_secret(unquote(password))
    return f"{scheme}://{user}:{MASK}@{rest[at + 1 :]}"


def strip_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """Split ``http://u:p@host/x`` into (``http://host/x``, ``u``, ``p``), userinfo percent-decoded."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    register_secret(password)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), user, password


def redact(text: str) -> str:
    """``text`` with URL passwords, Authorization values and every registered secret masked."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)} {MASK}", text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """A deep copy of a JSON-like value with every string redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the message, its arguments and any exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str | dict | list):
                record.__dict__[key] = redact_value(value)
        return True


_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
