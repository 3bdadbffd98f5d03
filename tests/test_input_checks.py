"""The checks behind ``test_bad_input``, without servers: URLs, passwords, YAML files, database names,
contradicting settings, Mango selectors and terminal escaping."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from couchfarm.console import printable
from couchfarm.errors import ConfigError
from couchfarm.names import db_name_problem
from couchfarm.redact import redact, redact_url
from couchfarm.replication.mango import selector_problem
from couchfarm.settings import Settings
from couchfarm.urls import url_problem
from couchfarm.yamlfile import read_yaml
from workers.logs import make_handler

HTTP = ("http", "https")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:p@ss:w/rd#x%y@127.0.0.1:5984", "http://admin:***@127.0.0.1:5984"),
        ("http://u:pa#ss@h/db", "http://u:***@h/db"),
        ("http://u:p/ss@h:1/db", "http://u:***@h:1/db"),
        ("http://u:p%40w@[::1]:5984/x", "http://u:***@[::1]:5984/x"),
        ("http://u@h:1", "http://u@h:1"),
        ("http://h/a@b", "http://h/a@b"),
        ("http://h:1/a@b", "http://h:***@b"),  # ambiguous: "1/a" may be a password with a raw /
        ("not a url", "not a url"),
    ],
)
def test_redact_url_never_raises_and_never_leaves_a_piece(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(f"see {url} now") == f"see {shown} now"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("not a url", "contains a space"),
        ("127.0.0.1:5984", "is not a URL"),
        ("ftp://h", "scheme 'ftp'"),
        ("http://", "names no host"),
        ("http://h:27x01", "port '27x01'"),
        ("http://h:1:2", "port '1:2'"),
        ("http://h:70000", "port '70000'"),
        ("http://[::1", "malformed host"),
        ("http://a:b@c@h", "raw @"),
        ("http://a:b/c@h", "raw @"),
        ("http://a:b%zz@h", "raw %"),
        ("u:pw@host", "(the value, not shown"),
    ],
)
def test_url_problems_name_the_part_and_hide_the_password(url: str, problem: str) -> None:
    found = url_problem(url, HTTP, "http://127.0.0.1:5984")
    assert found is not None and problem in found
    assert "pw" not in found.replace("pw@", "") or "not shown" in found


@pytest.mark.parametrize("url", ["http://127.0.0.1:5984", "https://u:p%40ss@couch.example:6984/prefix/"])
def test_good_urls_pass(url: str) -> None:
    assert url_problem(url, HTTP, "") is None


def test_duplicate_keys_are_reported_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: 1\nb:\n  c: 1\n  c: 2\nlist:\n  - {x: 1, x: 2}\na: 3\n")
    with pytest.raises(ConfigError) as caught:
        read_yaml(path)
    message = str(caught.value)
    assert f"{path}:4: b.c is given twice (first at line 3)" in message
    assert f"{path}:6: list.0.x is given twice (first at line 6)" in message
    assert f"{path}:7: a is given twice (first at line 1)" in message
    assert caught.value.source == f"{path}:4"


def test_merge_keys_and_equal_values_are_not_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("base: &b {x: 1}\none: {<<: *b, y: 2}\ntwo: {<<: *b, y: 3}\n")
    data, lines = read_yaml(path)
    assert data["one"] == {"x": 1, "y": 2} and lines[("two", "y")] == 3


@pytest.mark.parametrize(
    ("name", "legal"),
    [("orders", True), ("iot_*", True), ("[a-c]x?", True), ("_users", True), ("a$()+/-_9", True),
     ("[", False), ("Orders", False), ("1st", False), ("_*", False), ("x" * 239, False), ("", False)],
)  # fmt: skip
def test_database_names(name: str, legal: bool) -> None:
    assert (db_name_problem(name, globs=True) is None) is legal


def settings(**env: str) -> Settings:
    return Settings.load(env={f"COUCHFARM_{k.upper()}": v for k, v in env.items()})


@pytest.mark.parametrize(
    ("env", "fields"),
    [
        ({"retry_backoff": "2", "retry_backoff_max": "1"}, ["retry_backoff", "retry_backoff_max"]),
        ({"couch_backoff": "20"}, ["couch_backoff", "couch_backoff_max 10 s (the default)"]),
        ({"lease_ttl": "20"}, ["lease_ttl 20 s", "= 21 s"]),
        ({"feed_deadline": "0.5", "lease_ttl": "1.9"}, ["lease_ttl 1.9 s", "= 2 s"]),
        ({"databases": "a,b*,a"}, ["databases[2] 'a'", "repeats databases[0]"]),
        ({"databases": "a*,abc"}, ["databases[1] 'abc'", "matched first by databases[0] 'a*'"]),
    ],
)
def test_contradictions_name_every_field_and_its_source(env: dict[str, str], fields: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    assert "contradict" in str(caught.value)
    for piece in fields:
        assert piece in str(caught.value)


@pytest.mark.parametrize(
    "env",
    [{}, {"feed_deadline": "0.5", "lease_ttl": "2"}, {"databases": "abc,a*,b*"}, {"retry_backoff": "60"}],
)
def test_consistent_settings_pass(env: dict[str, str]) -> None:
    loaded = settings(**env)
    expected = "environment variable COUCHFARM_LEASE_TTL" if "lease_ttl" in env else "default"
    assert loaded.source_of("lease_ttl") == expected


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ({"status": {"$frobnicate": 1}}, "unknown operator '$frobnicate' at status.$frobnicate"),
        ({"$and": [{"a": {"$gt": 1}}, {"$where": "x"}]}, "unknown operator '$where' at $and[1].$where"),
        ({"a": {"$in": 3}}, "at a.$in: needs a list"),
        ({"a": {"$exists": "yes"}}, "at a.$exists: needs true or false"),
        ({"a": {"$mod": [0, 1]}}, "the divisor not 0"),
        ({"a": {"$size": True}}, "at a.$size: needs a whole number"),
        ({"$or": {"a": 1}}, "at $or: needs a list of selectors"),
        ({"a": {"$elemMatch": {"$bogus": 1}}}, "unknown operator '$bogus' at a.$elemMatch.$bogus"),
        ({"a": {"$beginsWith": 1}}, "needs a string"),
    ],
)
def test_mango_selectors_are_checked(selector: dict[str, object], problem: str) -> None:
    found = selector_problem(selector)
    assert found is not None and problem in found


def test_every_documented_mango_operator_passes() -> None:
    selector = {
        "$and": [{"a": {"$lt": 1, "$lte": 1, "$eq": 1, "$ne": 1, "$gte": 1, "$gt": 1}}],
        "$or": [{"b": {"$exists": True, "$type": "string", "$in": [1], "$nin": [2], "$size": 0}}],
        "$nor": [{"c": {"$mod": [3, 1], "$regex": "^x", "$beginsWith": "x", "$all": [1]}}],
        "$not": {"d": {"$elemMatch": {"$gt": 1}, "$allMatch": {"e": 1}, "$keyMapMatch": {"$eq": "k"}}},
        "\\$literal": {"nested": "value"},
    }
    assert selector_problem(selector) is None


def test_printable_escapes_what_moves_the_cursor_and_keeps_letters() -> None:
    assert printable("ok") == "ok"
    assert printable("a\nb\r\t\x1b[2J\x00\x9b\u202e\u2028") == "a\\nb\\r\\t\\x1b[2J\\x00\\x9b\\u202e\\u2028"
    assert printable("Grüße 東京 🙂") == "Grüße 東京 🙂"
    assert printable("one\ntwo\x1b", keep="\n") == "one\ntwo\\x1b"


def test_console_logs_escape_and_json_logs_stay_json() -> None:
    record = logging.makeLogRecord(
        {"msg": "noop %s", "args": ("a\nFORGED",), "levelno": 20, "levelname": "INFO", "doc_id": "x\x1b[2J"}
    )
    lines = []
    for fmt in ("console", "json"):
        stream = io.StringIO()
        make_handler(fmt, stream).handle(record)
        lines.append(stream.getvalue())
    console, as_json = lines
    assert console.count("\n") == 1 and "a\\nFORGED" in console and "doc_id=x\\x1b[2J" in console
    parsed = json.loads(as_json)
    assert parsed["msg"] == "noop a\nFORGED" and parsed["doc_id"] == "x\x1b[2J"
