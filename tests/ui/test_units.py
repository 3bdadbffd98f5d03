"""The UI's pure parts, no server: the field-level diff, CSRF tokens, signed messages, origins."""

from __future__ import annotations

import base64

from couchfarm.manual import ABSENT
from couchfarm.models import Leaf
from workers.ui.access import TOKEN_TTL, Access, same_origin
from workers.ui.diff import compare, flatten


def test_flatten_opens_objects_into_paths() -> None:
    body = {"a": {"b": 1, "c": {"d": [1]}}, "e": {}, "f": None}
    assert flatten(body) == {("a", "b"): 1, ("a", "c", "d"): [1], ("e",): {}, ("f",): None}


def test_cells_against_the_common_ancestor() -> None:
    base = {"qty": 1, "addr": {"zip": "1"}, "gone": True}
    live = (
        Leaf("2-b", {"qty": 2, "addr": {"zip": "1"}, "gone": True, "new": "x"}),
        Leaf("2-a", {"qty": 1, "addr": {"zip": "2"}}),
    )
    rows = {row.name: row for row in compare(live, base, {"qty": 2})}
    assert [c.status for c in rows["qty"].cells] == ["changed", "same"] and rows["qty"].differs
    assert [c.status for c in rows["addr.zip"].cells] == ["same", "changed"]
    assert [c.status for c in rows["gone"].cells] == ["same", "removed"]
    assert [c.status for c in rows["new"].cells] == ["added", "same"] and rows["new"].base is ABSENT
    assert rows["qty"].proposed == 2 and rows["new"].proposed is ABSENT


def test_without_an_ancestor_cells_say_whether_they_differ_from_the_winner() -> None:
    live = (Leaf("2-b", {"a": 1, "b": [1, 2]}), Leaf("2-a", {"a": 1, "b": [2, 1]}))
    rows = {row.name: row for row in compare(live, None, None)}
    assert [c.status for c in rows["a"].cells] == ["same", "same"] and not rows["a"].differs
    assert [c.status for c in rows["b"].cells] == ["same", "differs"] and rows["b"].differs


def test_credentials_tokens_and_messages() -> None:
    access = Access("ops", "pw:with:colons")
    header = "Basic " + base64.b64encode(b"ops:pw:with:colons").decode()
    assert access.authenticated(header) == "ops"
    assert access.authenticated("Basic " + base64.b64encode(b"ops:pw").decode()) is None
    assert access.authenticated("Basic !!!") is None and access.authenticated(None) is None
    token = access.csrf_token("ops", now=1000.0)
    assert access.csrf_ok("ops", token, now=1000.0 + TOKEN_TTL)
    assert not access.csrf_ok("ops", token, now=1001.0 + TOKEN_TTL)  # expired
    assert not access.csrf_ok("someone", token, now=1000.0)  # another user's
    assert not access.csrf_ok("ops", token, now=999.0)  # from the future
    assert not Access("ops", "pw:with:colons").csrf_ok("ops", token, now=1000.0)  # another key
    signed = access.sign("kept 2-a ✓")
    assert access.unsign(signed) == "kept 2-a ✓"
    assert access.unsign(signed[:-1] + ("0" if signed[-1] != "0" else "1")) is None
    assert Access(None, None).authenticated(None) == ""  # --unauthenticated


def test_same_origin() -> None:
    host = {"host": "127.0.0.1:5556"}
    assert same_origin(host)  # no Origin: not a browser's cross-site form
    assert same_origin({**host, "origin": "http://127.0.0.1:5556", "sec-fetch-site": "same-origin"})
    assert not same_origin({**host, "origin": "http://evil.example"})
    assert not same_origin({**host, "origin": "null"})
    assert not same_origin({**host, "sec-fetch-site": "cross-site"})
    assert not same_origin({**host, "sec-fetch-site": "same-site"})
