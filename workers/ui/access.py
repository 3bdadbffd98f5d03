"""Who may look and who may write: basic auth, CSRF tokens, signed flash messages, security headers.

- Every request, static files included, needs the ``ui_user``/``ui_password`` credentials (HTTP basic
  auth, compared in constant time) unless the UI was started ``--unauthenticated``; without them the
  answer is 401 with a ``WWW-Authenticate`` challenge, so a browser asks.
- Every write is a POST carrying a CSRF token: an HMAC of the user and a time under a key made at
  start (so a restart invalidates open forms, which then say so). A POST whose ``Origin`` or
  ``Sec-Fetch-Site`` shows another site is refused before the token is even looked at.
- Messages shown after a redirect travel in the URL signed with the same key, so a crafted link
  cannot make the page say something the server did not.
- Every answer carries a strict Content-Security-Policy (scripts only from this server), no framing,
  no sniffing, no referrer to other sites and no caching.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TOKEN_TTL = 12 * 3600.0  #: seconds a page's forms stay valid
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make browsers send Origin: null
    (b"cache-control", b"no-store"),
]


@dataclass
class Access:
    """The UI's access rules; ``password`` None means ``--unauthenticated``."""

    user: str | None
    password: str | None
    read_only: bool = False
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @property
    def open(self) -> bool:
        return self.password is None

    def authenticated(self, header: str | None) -> str | None:
        """The user name when ``header`` (``Authorization``) holds the right credentials, else None."""
        if self.open:
            return ""
        if not header or not header.lower().startswith("basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        ok_user = hmac.compare_digest(user.encode(), (self.user or "").encode())
        ok_password = hmac.compare_digest(password.encode(), (self.password or "").encode())
        return user if ok_user and ok_password else None

    # -- CSRF -----------------------------------------------------------------------------------

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()[:40]

    def csrf_token(self, user: str, now: float | None = None) -> str:
        stamp = str(int(time.time() if now is None else now))
        return f"{stamp}.{self._mac(f'csrf|{user}|{stamp}')}"

    def csrf_ok(self, user: str, token: str | None, now: float | None = None) -> bool:
        stamp, _, mac = (token or "").partition(".")
        if not stamp.isdigit() or not hmac.compare_digest(mac, self._mac(f"csrf|{user}|{stamp}")):
            return False
        return 0 <= (time.time() if now is None else now) - int(stamp) <= TOKEN_TTL

    # -- flash messages -------------------------------------------------------------------------

    def sign(self, text: str) -> str:
        raw = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
        return f"{raw}.{self._mac(f'flash|{raw}')}"

    def unsign(self, value: str | None) -> str | None:
        raw, _, mac = (value or "").partition(".")
        if not raw or not hmac.compare_digest(mac, self._mac(f"flash|{raw}")):
            return None
        try:
            return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None


def same_origin(headers: dict[str, str]) -> bool:
    """False when the browser says the request comes from another site (``Origin``, ``Sec-Fetch-Site``)."""
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:  # not a browser form post (curl, a script with the token): the token decides
        return True
    return origin != "null" and urlsplit(origin).netloc == headers.get("host", "")


class Guard:
    """ASGI middleware: basic auth on every request and the security headers on every answer."""

    def __init__(self, app: Any, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        user = self.access.authenticated(headers.get("authorization"))
        if user is None:
            await _challenge(send)
            return
        scope.setdefault("state", {})["user"] = user

        async def secured(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        await self.app(scope, receive, secured)


async def _challenge(send: Any) -> None:
    body = b"couchfarm ui: authentication required\n"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"www-authenticate", b'Basic realm="couchfarm", charset="UTF-8"'),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
