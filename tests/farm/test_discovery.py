"""Discovery and the change signal: ``_db_updates`` (recorded from CouchDB 3.4.3) where the server has
it, ``update_seq`` polling (pouchdb-server) where it has not; ``_all_dbs`` listing."""

from __future__ import annotations

import fakeredis

from couchfarm.couch import CouchClient
from couchfarm.dispatch.discovery import Discovery
from couchfarm.dispatch.signal import ChangeSignal
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from tests.helpers import FARM
from tests.replication.fakes import body, exchange, fake_client

GONE = exchange("08b", 0)["response"]["body"]  # 404 "Database does not exist." (no _global_changes)


def signal(client: CouchClient, held: set[str], woken: list[str], listed: list[int]) -> ChangeSignal:
    state = FarmState(fakeredis.FakeRedis(decode_responses=True), FARM)
    settings = Settings.load(env={"COUCHFARM_FARM": FARM})
    return ChangeSignal(client, state, settings, lambda: held, woken.append, lambda: listed.append(1))


def test_db_updates_marks_changed_databases_and_relists_on_created() -> None:
    created = body("08b", 5)  # {"results": [{"db_name": "rec_dbu1", "type": "created", ...}, ...]}
    quiet = body("08b", 6)  # since=now: {"results": [], "last_seq": ...}
    client, _ = fake_client({("GET", "/_db_updates"): [(200, quiet), (200, created)]})
    woken: list[str] = []
    listed: list[int] = []
    sig = signal(client, {"rec_dbu1"}, woken, listed)
    assert sig._db_updates() == set() and sig.has_db_updates and not listed
    assert sig.state.db_updates_since() == quiet["last_seq"]  # resumed from here next time
    changed = sig._db_updates()
    assert changed is not None and "rec_dbu1" in changed and listed == [1]
    sig._signal(changed)
    assert woken == ["rec_dbu1"] and sig.state.dirty_among(["rec_dbu1"]) == ["rec_dbu1"]


def test_db_updates_rows_are_parsed() -> None:
    client, _ = fake_client({("GET", "/_db_updates"): [(200, body("08b", 5))]})
    page = client.db_updates(since="now")
    assert page is not None and ("rec_dbu1", "created") in [(r.id, r.revs[0]) for r in page.results]
    assert isinstance(page.last_seq, str)


def test_without_db_updates_the_signal_polls_update_seq(client: CouchClient, db: str) -> None:
    other = db + "x"
    client.create_db(other)
    try:
        woken: list[str] = []
        sig = signal(client, {db, other}, woken, [])
        assert sig._db_updates() is None and sig.has_db_updates is False
        assert sig._poll() == {db, other}  # first look: both read once
        assert sig._poll() == set()  # nothing changed
        client.put(db, {"_id": "d", "v": 1})
        changed = sig._poll()
        assert changed == {db}
        sig._signal(changed)
        assert woken == [db] and sig.state.dirty_among([db, other]) == [db]
        assert sig.state.take_dirty(db) and sig.state.dirty_among([db]) == []
        sig.busy = lambda: {db}  # batches open there: its follower reads after they complete
        client.put(db, {"_id": "e", "v": 1})
        client.put(other, {"_id": "e", "v": 1})
        assert sig._poll() == {other} and sig._polled == 1  # a busy database costs no request
        sig.busy = set
        assert sig._poll() == {db}  # idle again: the change made meanwhile is seen
    finally:
        client.delete_db(other)


def test_discovery_lists_every_interval_and_when_invalidated() -> None:
    client, session = fake_client(
        {("GET", "/_all_dbs"): [(200, ["iot_a"]), (200, ["iot_a", "iot_b", "other"])]}
    )
    discovery = Discovery(client, ["iot_*", "explicit"], interval=3600, exclude=["iot_state"])
    assert discovery.databases() == ["explicit", "iot_a"]
    assert discovery.databases() == ["explicit", "iot_a"]  # within the interval: no listing
    discovery.invalidate()  # the change signal saw a database created or deleted
    assert discovery.databases() == ["explicit", "iot_a", "iot_b"]
    assert session.calls.count(("GET", "/_all_dbs")) == 2
    assert discovery.patterned == {"iot_a", "iot_b"}


def test_explicit_names_need_no_listing(client: CouchClient) -> None:
    assert Discovery(client, ["a", "b"], interval=0).databases() == ["a", "b"]
