"""The one error tree of couchfarm.

::

    FarmError                      root: everything couchfarm raises on purpose
    ├── ConfigError                a setting or file is malformed (names the field and the source)
    │   └── TLSError               (couchfarm.tls) a certificate is unreadable or a handshake failed
    ├── CouchError                 CouchDB answered with an error, or could not be reached
    │   ├── BadRequest             400 / 412 / 413 / 415 / 417: the request itself is wrong; never retried
    │   ├── Unauthorized           401: wrong or missing credentials; never retried (lockout risk)
    │   ├── Forbidden              403: refused (validate_doc_update, lockout, permissions)
    │   ├── NotFound               404: database, document or revision does not exist
    │   ├── Conflict               409: the document changed under us (re-read and retry)
    │   ├── NotCouchDB             the server answers, but GET / is not CouchDB's welcome (a wrong URL)
    │   └── Unavailable            transient: connection refused/reset, timeout, 5xx, 429
    │       └── CircuitOpen        the breaker is open: failing fast without a request
    ├── LeaseLost                  this process no longer holds a database's lease (fencing)
    ├── ResolverError              a strategy (built-in or the user's) raised or returned garbage
    │   └── AttachmentChoiceError  (couchfarm.attachments) leaves disagree on an attachment, no choice made
    └── AncestorMissing            a three-way merge's common ancestor has no body on this server

Every error keeps its extra fields keyword-only with defaults, and pickles with them, so that an
error raised in a Celery worker arrives intact in the parent process, a dead letter or a test.
Messages never contain credentials: URLs are redacted before they reach an error.
"""

from __future__ import annotations

from typing import Any


def _rebuild(cls: type[FarmError], message: str, fields: dict[str, Any]) -> FarmError:
    return cls(message, **fields)


class FarmError(Exception):
    """Root of every error couchfarm raises on purpose."""

    def __init__(self, message: str = "", **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in fields.items():
            setattr(self, key, value)
        self._fields = fields

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, dict(self._fields)))

    def __str__(self) -> str:
        return self.message


class ConfigError(FarmError):
    """Raised at start when a setting or a file is malformed; names the field and the source."""

    field: str
    source: str

    def __init__(self, message: str = "", *, field: str = "", source: str = "") -> None:
        super().__init__(message, field=field, source=source)


class CouchError(FarmError):
    """Raised when CouchDB answers with an error status, or cannot be reached."""

    status: int | None
    error: str
    reason: str
    method: str
    url: str

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        error: str = "",
        reason: str = "",
        method: str = "",
        url: str = "",
    ) -> None:
        super().__init__(message, status=status, error=error, reason=reason, method=method, url=url)


class BadRequest(CouchError):
    """Raised on 400, 412, 413, 415 and 417: the request is malformed and retrying cannot help."""


class Unauthorized(CouchError):
    """Raised on 401. Never retried: wrong passwords count toward CouchDB's account lockout."""


class Forbidden(CouchError):
    """Raised on 403: a validate_doc_update refused, the account is locked, or access is denied."""


class NotFound(CouchError):
    """Raised on 404: the database, document or revision does not exist."""


class Conflict(CouchError):
    """Raised on 409: the document changed since it was read; re-read and try again."""


class NotCouchDB(CouchError):
    """Raised by ``CouchClient.check_server`` when the URL answers but not as a CouchDB server."""


class Unavailable(CouchError):
    """Raised after retries on transient failures: connection errors, timeouts, 5xx and 429."""


class CircuitOpen(Unavailable):
    """Raised without a request while the circuit breaker for a server is open."""


class LeaseLost(FarmError):
    """Raised when a checkpoint write finds that this process no longer holds the lease."""

    db: str

    def __init__(self, message: str = "", *, db: str = "") -> None:
        super().__init__(message, db=db)


class ResolverError(FarmError):
    """Raised when a strategy raises or returns something that is not a document body."""

    strategy: str

    def __init__(self, message: str = "", *, strategy: str = "") -> None:
        super().__init__(message, strategy=strategy)


class AncestorMissing(FarmError):
    """Raised when a merge needs the common ancestor's body and this server no longer has it
    (compaction, ``_revs_limit``): merging without it could differ from a replica that has it."""

    rev: str

    def __init__(self, message: str = "", *, rev: str = "") -> None:
        super().__init__(message, rev=rev)


STATUS_ERRORS: dict[int, type[CouchError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    412: BadRequest,
    413: BadRequest,
    415: BadRequest,
    417: BadRequest,
}


def error_for_status(status: int) -> type[CouchError]:
    """The error class for an HTTP status: 5xx and 429 are transient, other 4xx are final."""
    if status >= 500 or status == 429:
        return Unavailable
    return STATUS_ERRORS.get(status, CouchError)
