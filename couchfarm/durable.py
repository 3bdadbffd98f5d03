"""Durable copies, in CouchDB, of the farm state that Redis alone would lose: dead letters and pauses.

Redis is the fast index; the farm's own CouchDB server keeps the record, in the ``state_db``
database (default ``couchfarm_state``), one document per item, ids prefixed by the farm's name:

* ``{farm}:dlq:{entry id}``: a dead letter (the fields of :class:`~couchfarm.deadletters.DeadLetter`),
  written before the Redis entry, deleted after it (replay, purge);
* ``{farm}:paused:{db}``: a paused database, written before the Redis set changes.

After Redis lost its data (a FLUSHALL, a lost volume, a failover that dropped the last writes) the
farm puts them back: :meth:`Durable.restore` fills Redis from these documents when the farm's
``restored`` marker is missing, and :meth:`Durable.reconcile` adds what Redis lacks at any time (the
dispatcher calls it every minute). Checkpoints have their own copy in each database
(``_local/couchfarm-checkpoint``), which also carries the lease's fencing token.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from couchfarm import keys
from couchfarm.couch import CouchClient
from couchfarm.deadletters import DeadLetter, DeadLetters
from couchfarm.errors import Conflict, NotFound
from couchfarm.state import FarmState

log = logging.getLogger("couchfarm.durable")


class Durable:
    def __init__(self, client: CouchClient, db: str, farm: str) -> None:
        self.client, self.db, self.farm = client, db, farm
        self._created = False

    def _id(self, kind: str, name: str) -> str:
        return f"{self.farm}:{kind}:{name}"

    def _ensure_db(self) -> None:
        if not self._created:
            self.client.create_db(self.db)
            self._created = True

    def _upsert(self, doc_id: str, body: dict[str, Any]) -> None:
        """Write ``body`` as the document's new content, whatever its current revision."""
        self._ensure_db()
        for _ in range(5):
            try:
                current = self.client.get(self.db, doc_id)
                doc = {**body, "_id": doc_id, "_rev": current["_rev"]}
            except NotFound:
                doc = {**body, "_id": doc_id}
            try:
                self.client.put(self.db, doc)
                return
            except Conflict:
                continue  # written meanwhile (another worker, the same dead letter): read again
        raise Conflict(f"{doc_id} in {self.db} kept changing while it was written")

    def _delete(self, doc_id: str) -> None:
        try:
            current = self.client.get(self.db, doc_id)
            self.client.bulk_docs(self.db, [{"_id": doc_id, "_rev": current["_rev"], "_deleted": True}])
        except NotFound:
            return

    def _docs(self, kind: str) -> list[dict[str, Any]]:
        prefix = self._id(kind, "")
        try:
            rows = self.client.all_docs(self.db, startkey=prefix, endkey=prefix + "\ufff0", include_docs=True)
        except NotFound:
            return []
        return [r["doc"] for r in rows if r.get("doc")]

    # -- dead letters ---------------------------------------------------------------------------

    def keep_dead_letter(self, entry: DeadLetter) -> None:
        self._upsert(self._id("dlq", entry.id), {"kind": "dead_letter", **asdict(entry)})

    def drop_dead_letter(self, entry_id: str) -> None:
        self._delete(self._id("dlq", entry_id))

    def dead_letters(self) -> list[DeadLetter]:
        fields = set(DeadLetter.__dataclass_fields__)
        return [DeadLetter(**{k: v for k, v in d.items() if k in fields}) for d in self._docs("dlq")]

    # -- pauses ---------------------------------------------------------------------------------

    def set_paused(self, db: str, paused: bool) -> None:
        if paused:
            self._upsert(self._id("paused", db), {"kind": "paused", "db": db, "at": time.time()})
        else:
            self._delete(self._id("paused", db))

    def paused(self) -> list[str]:
        return sorted(str(d["db"]) for d in self._docs("paused"))

    # -- putting Redis back ---------------------------------------------------------------------

    def restore(self, state: FarmState, store: DeadLetters) -> bool:
        """Fill Redis from the durable copies when its ``restored`` marker is missing (it lost its
        data, or this farm never ran there); True when it did."""
        marker = state.ks(keys.RESTORED)
        if state.redis.exists(marker):
            return False
        added = self.reconcile(state, store)
        state.redis.set(marker, repr(time.time()))
        log.info("Redis had no state of farm %s: restored %d items from %s", self.farm, added, self.db)
        return True

    def reconcile(self, state: FarmState, store: DeadLetters) -> int:
        """Add to Redis every durable dead letter and pause it lacks; the number added."""
        added = 0
        for db in self.paused():
            if not state.is_paused(db):
                state.pause(db, durable=False)
                added += 1
        for entry in self.dead_letters():
            if store.get(entry.id) is None:
                store.put_back(entry)
                added += 1
        if added:
            log.warning("%d items of farm %s were missing from Redis and were put back", added, self.farm)
        return added
