"""The exit statuses of every ``couchfarm`` command (README "Exit codes"), in one place.

The ``replication`` commands give 2 and 3 meanings of their own (``workers/cli_replication.py``).
"""

from __future__ import annotations

OK = 0  #: done; for resolve and dlq replay: no dead letter left
FAILED = 1  #: the work did not complete: dead letters remain, a refusal, an error CouchDB answered
CONFIG = 2  #: a bad setting, flag or file; settings that contradict; a URL that is not CouchDB
UNREACHABLE = 4  #: CouchDB (after its retries) or Redis could not be reached
ABORTED = 130  #: interrupted, or a confirmation declined
