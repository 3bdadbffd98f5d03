"""Which databases the dispatcher follows: explicit names, and globs kept current through ``_db_updates``
where the server has it, else by polling ``_all_dbs`` every ``discovery_interval``."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from fnmatch import fnmatchcase

from couchfarm.couch import CouchClient
from couchfarm.errors import CouchError

log = logging.getLogger("couchfarm.dispatcher")


def is_pattern(name: str) -> bool:
    return any(c in name for c in "*?[")


class Discovery:
    """Which databases match the configured names and globs, kept current: ``_all_dbs`` is listed
    every ``interval``, and at once after ``invalidate`` (the change signal saw a database created
    or deleted)."""

    def __init__(
        self, client: CouchClient, names: Iterable[str], interval: float, exclude: Iterable[str] = ()
    ) -> None:
        self.client = client
        self.names = list(dict.fromkeys(names))
        self.interval = interval
        self.exclude = set(exclude)  #: the farm's own databases (state, archive): never followed by a glob
        self.patterned: set[str] = set()  #: databases a glob matched in the last listing
        self._known: list[str] = []
        self._at = float("-inf")

    @property
    def globs(self) -> list[str]:
        return [n for n in self.names if is_pattern(n)]

    def invalidate(self) -> None:
        self._at = float("-inf")

    def databases(self) -> list[str]:
        explicit = [n for n in self.names if not is_pattern(n)]
        if len(explicit) == len(self.names):
            return explicit
        if time.monotonic() - self._at >= self.interval:
            try:
                all_dbs = self.client.all_dbs()
            except CouchError as exc:
                log.warning("could not list databases: %s", exc)
                return self._known
            self.patterned = {db for db in all_dbs if self._matches(db)}
            self._known = sorted(self.patterned | set(explicit))
            self._at = time.monotonic()
        return self._known

    def follows(self, db: str) -> bool:
        """Whether ``db`` is one of the databases this farm follows (by name or by a glob)."""
        return db in self.names or self._matches(db)

    def _matches(self, db: str) -> bool:
        if db.startswith("_") or db in self.exclude:
            return False
        return any(fnmatchcase(db, n) for n in self.names if is_pattern(n))
