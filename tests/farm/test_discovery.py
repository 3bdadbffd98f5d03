"""Discovery and the change signal: ``_db_updates`` (recorded from CouchDB 3.4.3) where the server has
it, ``update_seq`` polling (pouchdb-server) where it has not; ``_all_dbs`` listing."""

from __future__ import annotations

import threading
import time
import uuid

import fakeredis
import pytest
import redis

from couchfarm import keys
from couchfarm.couch import CouchClient
from couchfarm.dispatch import signal as signal_module
from couchfarm.dispatch.discovery import Discovery
from couchfarm.dispatch.dispatcher import Dispatcher
from couchfarm.dispatch.signal import ChangeSignal
from couchfarm.ledger import Ledger
from couchfarm.settings import Settings
from couchfarm.state import FarmState
from tests.helpers import FARM, wait_for
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
    sig.follows = lambda db: db.startswith("tenant_")  # the farm follows tenant_* only
    sig._signal({"tenant_held_elsewhere", "_users", "other_app"})
    marks = sig.state.redis.smembers(sig.state.ks(keys.DIRTY))
    assert "tenant_held_elsewhere" in marks and not {"_users", "other_app"} & marks  # never taken


def test_with_db_updates_idle_databases_are_swept_now_and_then(monkeypatch: pytest.MonkeyPatch) -> None:
    """``_db_updates`` may miss an update: every SWEEP_EVERY the idle databases' update_seq is polled
    too (a follower has no sweep of its own any more)."""
    client, _ = fake_client({("GET", "/_db_updates"): [(200, body("08b", 6))]})  # always quiet
    woken: list[str] = []
    sig = signal(client, {"quiet"}, woken, [])
    polls: list[float] = []

    def poll() -> set[str]:
        polls.append(time.monotonic())
        return {"quiet"}  # its update_seq moved although no event said so

    monkeypatch.setattr(sig, "_poll", poll)
    monkeypatch.setattr(signal_module, "SWEEP_EVERY", 0.3)
    sig.start()
    time.sleep(1.0)
    sig.stop.set()
    assert sig.thread is not None
    sig.thread.join(5)
    assert sig.has_db_updates and 1 <= len(polls) <= 6, polls  # not at every _db_updates answer
    assert "quiet" in woken and sig.state.dirty_among(["quiet"]) == ["quiet"]


def test_a_mark_wakes_its_follower_within_a_moment_whatever_the_poll_does() -> None:
    """A worker's completion marks its database in Redis; the holder's signal wakes the follower
    within MARKS_EVERY, not at the end of a poll (which may take many seconds)."""
    client, _ = fake_client({("GET", "/_db_updates"): [(200, body("08b", 6))]})
    woken: list[str] = []
    sig = signal(client, {"held", "other"}, woken, [])
    sig.start()
    try:
        time.sleep(0.1)
        woken.clear()
        sig.state.mark_dirty(["held", "elsewhere"])  # a completion here, and a mark for another holder
        wait_for(lambda: "held" in woken, 2 * signal_module.MARKS_EVERY + 1, "the marked database woken")
        assert "elsewhere" not in woken and "other" not in woken
    finally:
        sig.stop.set()


def test_db_updates_rows_are_parsed() -> None:
    client, _ = fake_client({("GET", "/_db_updates"): [(200, body("08b", 5))]})
    page = client.db_updates(since="now")
    assert page is not None and ("rec_dbu1", "created") in [(r.id, r.revs[0]) for r in page.results]
    assert isinstance(page.last_seq, str)


def look(sig: ChangeSignal) -> set[str]:
    """One poll as the signal's thread makes it: poll, mark and wake, keep the new baselines."""
    changed = sig._poll()
    sig._signal(changed)
    sig._keep_polled()
    return changed


def test_without_db_updates_the_signal_polls_update_seq(client: CouchClient, db: str) -> None:
    other = db + "x"
    client.create_db(other)
    try:
        woken: list[str] = []
        sig = signal(client, {db, other}, woken, [])
        assert sig._db_updates() is None and sig.has_db_updates is False
        assert look(sig) == {db, other}  # first look: both read once
        assert sig.state.take_dirty(db) and sig.state.take_dirty(other)
        woken.clear()
        assert look(sig) == set()  # nothing changed
        client.put(db, {"_id": "d", "v": 1})
        assert look(sig) == {db}
        assert woken == [db] and sig.state.dirty_among([db, other]) == [db]
        assert sig.state.take_dirty(db) and sig.state.dirty_among([db]) == []
        sig.busy = lambda: {db}  # batches open there: its follower reads after they complete
        client.put(db, {"_id": "e", "v": 1})
        client.put(other, {"_id": "e", "v": 1})
        assert look(sig) == {other} and sig._polled == 1  # a busy database costs no request
        sig.busy = set
        assert look(sig) == {db}  # idle again: the change made meanwhile is seen
        client.put(db, {"_id": "f", "v": 1})
        sig.read_to(db, client.changes(db, since=None).last_seq)  # its follower read the change
        assert db not in look(sig)  # nothing since that read: no read again
        client.put(db, {"_id": "g", "v": 1})
        assert sig._poll() == {db}  # changed after its follower's last read ...
        assert sig._poll() == {db}  # ... and, its mark never written (Redis failed), found again
        sig.read_to(db, "7-g1AAAA-a-seq-no-update_seq-ever-equals")  # CouchDB: values never equal
        assert look(sig) == {db} and look(sig) == set()  # the last poll's value counts: one read
        client.delete_db(other)
        assert look(sig) == {other}  # gone: its follower's next read finds out and drops it
    finally:
        if other in client.all_dbs():
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


class _NoBroker:
    """Databases without conflicts: nothing is ever published."""

    def send(self, batch: object) -> None:
        raise AssertionError(f"nothing to publish, yet {batch} was")

    def queued(self) -> set[str] | None:
        return set()


def test_an_idle_database_costs_its_update_seq_poll_and_no_feed_read(couch_url: str, redis_url: str) -> None:
    """Once a follower has read its database to the end, nothing reads it again until it changes:
    the first poll compares with that read's last_seq (no 'first look' read), and no follower keeps
    a sweep of its own."""
    requests_seen: list[tuple[str, str]] = []
    counted = CouchClient(couch_url, on_request=lambda method, path, *_: requests_seen.append((method, path)))
    names = [f"tidle{uuid.uuid4().hex[:8]}{i}" for i in range(3)]
    for name in names:
        counted.create_db(name)
        counted.put(name, {"_id": "d", "v": 0})
    state = FarmState(redis.Redis.from_url(redis_url, decode_responses=True), FARM)
    settings = Settings(farm=FARM, lease_ttl=6, change_poll_interval=0.2, discovery_interval=1)
    d = Dispatcher(counted, state, Ledger(state.redis, FARM), settings, _NoBroker(), names=names)
    runner = threading.Thread(target=d.run, daemon=True)
    runner.start()
    try:
        wait_for(lambda: set(d.followers) == set(names) and all(f.idle for f in d.followers.values()), 20)
        wait_for(lambda: not d.scheduler._running, 5)
        assert not set(d.scheduler._due) & set(names)  # no round due: only the signal wakes them
        requests_seen.clear()
        time.sleep(2.0)  # about ten polls
        polls = [p for m, p in requests_seen if m == "GET" and p.strip("/") in names]
        reads = [p for _, p in requests_seen if "_changes" in p]
        assert len(polls) >= 3 * len(names) and reads == [], (polls, reads)
        counted.put(names[0], {"_id": "e", "v": 1})
        wait_for(lambda: any("_changes" in p for _, p in requests_seen), 10, "the changed database read")
        time.sleep(1.0)
        reads = [p for _, p in requests_seen if "_changes" in p]
        assert reads and all(p.startswith(f"{names[0]}/") for p in reads), reads
    finally:
        d.stop.set()
        runner.join(20)
        for name in names:
            counted.delete_db(name)


def test_follows_names_and_globs_but_not_the_farms_own_or_system_databases() -> None:
    client, _ = fake_client({})
    d = Discovery(client, ["orders", "tenant_*"], 10.0, exclude=["tenant_state"])
    assert d.follows("orders") and d.follows("tenant_a")
    assert not d.follows("tenant_state") and not d.follows("_users") and not d.follows("other")
