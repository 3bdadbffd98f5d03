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
    """Which databases match the configured names and globs, kept current."""

    def __init__(
        self, client: CouchClient, names: Iterable[str], interval: float, exclude: Iterable[str] = ()
    ) -> None:
        self.client = client
        self.names = list(dict.fromkeys(names))
        self.exclude = set(exclude)  #: the farm's own databases (state, archive): never followed by a glob
        self.interval = interval
        self._known: list[str] = []
        self._at = float("-inf")
        self._updates_seq: object = None
        self._has_updates: bool | None = None

    def databases(self) -> list[str]:
        if not any(is_pattern(n) for n in self.names):
            return list(self.names)
        if time.monotonic() - self._at >= self.interval or self._changed():
            try:
                all_dbs = self.client.all_dbs()
            except CouchError as exc:
                log.warning("could not list databases: %s", exc)
                return self._known
            self._known = sorted(
                {db for db in all_dbs if self._matches(db)} | {n for n in self.names if not is_pattern(n)}
            )
            self._at = time.monotonic()
        return self._known

    def _matches(self, db: str) -> bool:
        if db.startswith("_") or db in self.exclude:
            return False
        return any(fnmatchcase(db, n) for n in self.names if is_pattern(n))

    def _changed(self) -> bool:
        """Whether ``_db_updates`` reports a change since the last look (never, where it is missing)."""
        if self._has_updates is False:
            return False
        page = self.client.db_updates(since=self._updates_seq or "now", timeout_ms=1)
        if page is None:
            self._has_updates = False
            log.debug("no _db_updates: discovering databases by polling _all_dbs")
            return False
        self._has_updates = True
        self._updates_seq = page.last_seq
        return bool(page.results)
