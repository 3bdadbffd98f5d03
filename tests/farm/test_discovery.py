"""Database discovery through ``_db_updates`` (recorded from CouchDB 3.4.3) and ``_all_dbs`` polling."""

from __future__ import annotations

from couchfarm.couch import CouchClient
from couchfarm.dispatch.discovery import Discovery
from tests.replication.fakes import body, exchange, fake_client

GONE = exchange("08b", 0)["response"]["body"]  # 404 "Database does not exist." (no _global_changes)


def test_db_updates_wakes_discovery_before_the_poll_interval() -> None:
    created = body("08b", 5)  # {"results": [{"db_name": "rec_dbu1", "type": "created", ...}, ...]}
    quiet = body("08b", 6)  # since=now: {"results": [], "last_seq": ...}
    client, session = fake_client(
        {
            ("GET", "/_all_dbs"): [(200, ["iot_a"]), (200, ["iot_a", "iot_b", "other"])],
            ("GET", "/_db_updates"): [(200, quiet), (200, created)],
        }
    )
    discovery = Discovery(client, ["iot_*"], interval=3600)
    assert discovery.databases() == ["iot_a"]
    assert discovery.databases() == ["iot_a"]  # _db_updates quiet: no new _all_dbs call
    assert session.calls.count(("GET", "/_all_dbs")) == 1
    assert discovery.databases() == ["iot_a", "iot_b"]  # an update arrived: listed again at once
    assert ("GET", "/_db_updates") in session.calls


def test_db_updates_rows_are_parsed() -> None:
    client, _ = fake_client({("GET", "/_db_updates"): [(200, body("08b", 5))]})
    page = client.db_updates(since="now")
    assert page is not None and ("rec_dbu1", "created") in [(r.id, r.revs[0]) for r in page.results]
    assert isinstance(page.last_seq, str)


def test_without_db_updates_discovery_polls_all_dbs() -> None:
    client, session = fake_client(
        {
            ("GET", "/_all_dbs"): [(200, ["iot_a"]), (200, ["iot_b"])],
            ("GET", "/_db_updates"): [(404, GONE)],
        }
    )
    discovery = Discovery(client, ["iot_*", "explicit"], interval=3600)
    assert discovery.databases() == ["explicit", "iot_a"]
    assert discovery.databases() == ["explicit", "iot_a"]  # no _db_updates: wait for the interval
    discovery.interval = 0
    assert discovery.databases() == ["explicit", "iot_b"]  # polled again: iot_a deleted, iot_b created
    assert session.calls.count(("GET", "/_db_updates")) == 1  # asked once, then never again


def test_explicit_names_need_no_listing(client: CouchClient) -> None:
    assert Discovery(client, ["a", "b"], interval=0).databases() == ["a", "b"]
