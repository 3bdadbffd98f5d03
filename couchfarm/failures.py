"""Why a document failed: the one list of dead-letter reasons.

A :class:`Failure` is the ``error`` of a ``DocResult`` that is dead-lettered or retried (a retried one
that still fails after ``max_retries`` is dead-lettered with it), of a dead letter in the store and its
durable copy, of the ``couchfarm.dead_letter`` task Flower shows, of the ``couchfarm_dead_lettered``
metric, of ``couchfarm dlq list --error`` and of the UI's filter. Dead letters stored before this list
existed carry other strings (an exception's class name): :meth:`Failure.parse` reads every one.
"""

from __future__ import annotations

from enum import StrEnum

from couchfarm.errors import AncestorMissing, Conflict, CouchError, ResolverError, Unavailable


class Failure(StrEnum):
    # final: dead-lettered at once
    INVALID_DOCUMENT = "InvalidDocument"  # a leaf or the merge fails the database's schema
    DESIGN_DOCUMENT = "DesignDocument"  # a conflicted design document its database rule does not open
    PROVENANCE_MISMATCH = "ProvenanceMismatch"  # last merged by another strategy definition
    RESOLVER_ERROR = "ResolverError"  # the strategy raised, or returned something that is no body
    UNRESOLVABLE = "Unresolvable"  # the strategy cannot decide (or leaves disagree on an attachment)
    REJECTED = "Rejected"  # the server refused a write: validate_doc_update, 401/403, a bad document
    POISON_DOCUMENT = "PoisonDocument"  # its resolution killed its process max_deliveries times
    # retried first: dead-lettered when still so after max_retries retries
    CONFLICT = "Conflict"  # a 409: the document changed under the write
    READ_ERROR = "ReadError"  # its leaves were not read completely (an error entry inside a 200)
    ANCESTOR_MISSING = "AncestorMissing"  # a merge's common ancestor has no body on this server
    UNAVAILABLE = "Unavailable"  # CouchDB could not be reached, after its own retries (or breaker open)
    COUCH_ERROR = "CouchError"  # CouchDB answered another error to a read or a write (the reason says)
    UNEXPECTED = "Unexpected"  # an error the engine did not turn into an outcome, a bug: the reason says

    @classmethod
    def of(cls, exc: BaseException) -> Failure:
        """The failure an exception stands for."""
        if isinstance(exc, Unavailable):
            return cls.UNAVAILABLE
        if isinstance(exc, Conflict):
            return cls.CONFLICT
        if isinstance(exc, CouchError):
            return cls.COUCH_ERROR
        if isinstance(exc, AncestorMissing):
            return cls.ANCESTOR_MISSING
        if isinstance(exc, ResolverError):
            return cls.RESOLVER_ERROR
        return cls.UNEXPECTED

    @classmethod
    def parse(cls, text: str) -> Failure:
        """A stored value read back: one of the list, or what an older farm stored in its place (the
        class name of a CouchDB error, of any other exception, or ``Error``)."""
        try:
            return cls(text)
        except ValueError:
            return LEGACY.get(text, cls.UNEXPECTED)


#: Class names older farms stored for errors of CouchDB (every other name was an unexpected error).
LEGACY = {
    "CircuitOpen": Failure.UNAVAILABLE,
    "NotFound": Failure.COUCH_ERROR,
    "Forbidden": Failure.COUCH_ERROR,
    "Unauthorized": Failure.COUCH_ERROR,
    "BadRequest": Failure.COUCH_ERROR,
    "NotCouchDB": Failure.COUCH_ERROR,
}
